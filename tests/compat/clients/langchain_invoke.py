"""The API page's LangChain example, unchanged but for base URL and key."""

import os

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(
    base_url=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
    temperature=0.7,
)
response = llm.invoke("What is the capital of France?")
print(response.content)
