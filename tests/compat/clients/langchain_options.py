"""LangChain with max_tokens (sent as max_completion_tokens) and stream_usage, the options
users add first; prints what LangChain understood of the answers."""

import json
import os

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(
    base_url=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
    max_tokens=5,
    stream_usage=True,
)
response = llm.invoke("Count to 10")
chunks = list(llm.stream("Count to 10"))
streamed = sum(chunks[1:], chunks[0])
print(
    json.dumps(
        {
            "invoke": {"content": response.content, "usage": response.usage_metadata},
            "stream": {"content": streamed.content, "usage": streamed.usage_metadata},
        }
    )
)
