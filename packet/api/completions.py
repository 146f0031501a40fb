"""POST /v1/completions."""

from flask import Response

from ..limits import counted_at_admission
from ..proxy import handle
from ..schemas import COMPLETION
from . import bp


@bp.post("/completions")
@counted_at_admission
def completions() -> Response:
    """Legacy text completion, streamed as SSE when ``stream`` is true."""
    return handle(COMPLETION, "completions", "/v1/completions")
