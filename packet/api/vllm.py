"""vLLM's own routes: rerank, score, tokenize, detokenize — under /v1 and at the root, as vLLM
serves them."""

from flask import Blueprint

from ..gateway import routes
from ..limits import init_blueprint
from . import bp
from .serving import proxy

# The root paths (/rerank, /v2/rerank, /score, /tokenize, /detokenize): authenticated and
# limited as /v1 is.
root = Blueprint("vllm", __name__)
init_blueprint(root)

for blueprint in (bp, root):
    proxy(blueprint, "/rerank", routes.RERANK, "Rerank documents against a query.")
    proxy(blueprint, "/score", routes.SCORE, "Score text pairs.")
    proxy(blueprint, "/tokenize", routes.TOKENIZE, "Token ids of a prompt or chat.")
    proxy(blueprint, "/detokenize", routes.DETOKENIZE, "The text of token ids.")
proxy(root, "/v2/rerank", routes.RERANK_V2, "Rerank documents against a query (Cohere v2).")
