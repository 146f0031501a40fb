"""vLLM's wire shapes: JSON answers, the error envelope, model cards, usage and SSE frames."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
    413: "Request Entity Too Large",
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

    def anthropic_body(self) -> dict[str, Any]:
        """Anthropic's envelope, which vLLM's ``/v1/messages`` answers its errors in."""
        kind = ANTHROPIC_KINDS.get(self.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}


ANTHROPIC_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    503: "overloaded_error",
}


def respond(start_response: Any, status: int, body: Any) -> list[bytes]:
    """Send ``body`` as a whole JSON answer."""
    start_response(f"{status} {REASONS.get(status, 'Error')}", JSON_HEADERS)
    return [orjson.dumps(body)]


def sse(start_response: Any, events: Iterator[bytes]) -> Iterator[bytes]:
    """Start an event stream: the headers go at once, like vLLM's (Starlette), so the silence
    of prefill comes after them."""
    write = start_response("200 OK", SSE_HEADERS)
    write(b"")
    return events


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


def named_frame(event: dict[str, Any]) -> bytes:
    """One SSE event named by its ``type`` (the Responses and Anthropic Messages streams)."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def new_id(prefix: str) -> str:
    """A fresh object id, ``<prefix><32 hex digits>``."""
    return prefix + uuid.uuid4().hex


def model_card(model: str, created: int, max_model_len: int, *, sparse: bool) -> dict[str, Any]:
    """One entry of ``/v1/models``, as vLLM lists it (plus ``simulated``, to tell it apart);
    ``sparse``: only what every OpenAI-like server sends (``--sparse-cards``)."""
    if sparse:
        return {"id": model, "object": "model", "owned_by": "vllm"}
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
