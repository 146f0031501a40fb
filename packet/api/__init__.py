"""The public OpenAI-compatible API: one ``v1`` blueprint, a module per resource."""

from flask import Blueprint

from ..limits import init_blueprint

bp = Blueprint("v1", __name__, url_prefix="/v1")
init_blueprint(bp)

from . import (  # noqa: E402,F401  (views register on bp)
    audio,
    batches,
    chat,
    embeddings,
    files,
    messages,
    models,
    responses,
    vllm,
)
