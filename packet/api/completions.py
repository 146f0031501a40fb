"""POST /v1/completions."""

from flask import Response

from ..gateway import routes
from ..limits import counted_at_admission
from . import bp
from .serving import proxied


@bp.post("/completions")
@counted_at_admission
def completions() -> Response:
    """Legacy text completion, streamed as SSE when ``stream`` is true."""
    return proxied(routes.COMPLETIONS)
