"""vLLM's wire shapes: JSON answers, the error envelope, model cards, usage and SSE frames."""

from __future__ import annotations

from typing import Any

import orjson

JSON_HEADERS = [("Content-Type", "application/json")]
SSE_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
DONE = b"data: [DONE]\n\n"
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """An answer in vLLM's error shape; raised below the router, rendered once by it."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "BadRequestError",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def body(self) -> dict[str, Any]:
        """``{"error": {message, type, param, code}}``, code being the HTTP status."""
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        }


def respond(start_response: Any, status: int, body: Any) -> list[bytes]:
    """Send ``body`` as a whole JSON answer."""
    start_response(f"{status} {REASONS.get(status, 'Error')}", JSON_HEADERS)
    return [orjson.dumps(body)]


def usage(prompt: int, completion: int) -> dict[str, int]:
    """vLLM's ``usage`` object, in vLLM's key order."""
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
    }


def frame(event: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + orjson.dumps(event) + b"\n\n"


def model_card(model: str, created: int, max_model_len: int) -> dict[str, Any]:
    """One entry of ``/v1/models``, as vLLM lists it (plus ``simulated``, to tell it apart)."""
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [
            {
                "id": f"modelperm-{model}",
                "object": "model_permission",
                "created": created,
                "allow_sampling": True,
            }
        ],
        "simulated": True,
    }
