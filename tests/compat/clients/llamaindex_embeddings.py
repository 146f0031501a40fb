"""LlamaIndex's OpenAIEmbedding and OpenAILikeEmbedding against the gateway; prints every
vector, and what the gateway answered OpenAIEmbedding asking for an OpenAI model, as JSON.

OpenAIEmbedding only takes OpenAI's model names (``model``: "text-embedding-3-small", ...),
and sends that name; ``model_name`` overrides what it sends, as OpenAILikeEmbedding does."""

import json
import os

import openai
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.embeddings.openai_like import OpenAILikeEmbedding

BASE_URL, KEY = os.environ["PACKET_BASE_URL"], os.environ["PACKET_KEY"]
DOCUMENTS = ["Paris is the capital of France.", "Berlin is the capital of Germany."]
QUERY = "Paris is the capital of France."

clients = {
    "openai": OpenAIEmbedding(api_base=BASE_URL, api_key=KEY, model_name="auto"),
    "openai_like": OpenAILikeEmbedding(
        model_name="simulated/vllm-demo", api_base=BASE_URL, api_key=KEY
    ),
}
result = {
    name: {
        "documents": client.get_text_embedding_batch(DOCUMENTS),
        "query": client.get_query_embedding(QUERY),
    }
    for name, client in clients.items()
}

openai_name = OpenAIEmbedding(api_base=BASE_URL, api_key=KEY, model="text-embedding-3-small")
try:
    openai_name.get_query_embedding(QUERY)
    result["openai_name"] = {"status": 200}
except openai.APIStatusError as error:
    result["openai_name"] = {"status": error.status_code, "error": error.body}
print(json.dumps(result))
