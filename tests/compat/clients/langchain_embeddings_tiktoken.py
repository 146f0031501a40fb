"""LangChain's OpenAIEmbeddings with its defaults: each text is tokenized with tiktoken (whose
encoding file is downloaded once, then cached) and sent as token ids. Prints the vectors."""

import json
import os

from langchain_openai import OpenAIEmbeddings

embeddings = OpenAIEmbeddings(
    base_url=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
)
print(json.dumps({"query": embeddings.embed_query("Paris is the capital of France.")}))
