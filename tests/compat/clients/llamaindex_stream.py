"""The page's LlamaIndex client, streamed: one JSON string per delta so the test can count them."""

import json
import os

from llama_index.llms.openai_like import OpenAILike

llm = OpenAILike(
    api_base=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
)
for chunk in llm.stream_complete("Hello, how are you?"):
    print(json.dumps(chunk.delta), flush=True)
