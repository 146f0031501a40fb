"""The API page's LlamaIndex example, unchanged but for base URL and key (and a print)."""

import os

from llama_index.llms.openai_like import OpenAILike

llm = OpenAILike(
    api_base=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
)
response = llm.complete("Hello, how are you?")
print(response)
