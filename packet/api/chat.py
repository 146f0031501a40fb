"""POST /v1/chat/completions."""

from flask import Response

from ..gateway import routes
from ..limits import counted_at_admission
from . import bp
from .serving import proxied


@bp.post("/chat/completions")
@counted_at_admission
def chat_completions() -> Response:
    """Chat completion, streamed as SSE when ``stream`` is true."""
    return proxied(routes.CHAT)
