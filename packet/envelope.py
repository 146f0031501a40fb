"""OpenAI's error envelope, defined once for every writer of it.

The Flask error renderer, the SSE relay's in-band errors and the gunicorn worker (which answers
some requests before the app sees them) all build it here. The worker imports this module in
gunicorn's master process, before gevent patches anything, so it imports nothing but orjson.
"""

from __future__ import annotations

from typing import Any

INTERNAL_ERROR = "The server had an error while processing your request."


def error_body(message: str, type: str, code: str, param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
