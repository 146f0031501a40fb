"""The page's LangChain client, streamed: one JSON string per chunk so the test can count them."""

import json
import os

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(
    base_url=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
    temperature=0.7,
)
for chunk in llm.stream("What is the capital of France?"):
    print(json.dumps(chunk.content), flush=True)
