"""POST /v1/embeddings."""

from ..gateway import routes
from . import bp
from .serving import proxy

proxy(bp, "/embeddings", routes.EMBEDDINGS, "Embeddings of a text, texts or token ids.")
