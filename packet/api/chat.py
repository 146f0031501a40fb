"""POST /v1/chat/completions."""

from flask import Response

from ..limits import counted_at_admission
from ..proxy import handle
from ..schemas import CHAT
from . import bp


@bp.post("/chat/completions")
@counted_at_admission
def chat_completions() -> Response:
    """Chat completion, streamed as SSE when ``stream`` is true."""
    return handle(CHAT, "chat.completions", "/v1/chat/completions")
