"""LangChain's OpenAIEmbeddings as its docs say to use it with vLLM: check_embedding_ctx_length
off, so the texts go as strings (on, it tokenizes them with tiktoken first, whose encoding
files it downloads). Prints every vector, as JSON."""

import json
import os

from langchain_openai import OpenAIEmbeddings

embeddings = OpenAIEmbeddings(
    base_url=os.environ["PACKET_BASE_URL"],
    model="auto",
    api_key=os.environ["PACKET_KEY"],
    check_embedding_ctx_length=False,
)
documents = embeddings.embed_documents(
    ["Paris is the capital of France.", "Berlin is the capital of Germany."]
)
query = embeddings.embed_query("Paris is the capital of France.")
print(json.dumps({"documents": documents, "query": query}))
