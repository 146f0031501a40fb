"""Anthropic's Messages API, as vLLM serves it: its body, its named events, its error envelope.

Errors on these routes are Anthropic's ``{"type": "error", "error": {"type", "message"}}``
with Anthropic's status↔type pairs, so the Anthropic SDK raises the class its users catch.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from .. import usage
from ..schemas import MAX_TOKENS, Open, StrictBool, StrictNumber, integer, number
from ..upstream.sse import StreamFormat, StreamResult, named_event, read_named
from .wire import OnId, Wire, answer_input_output, as_dicts, generation, input_output, text_tokens

# The Anthropic routes' common prefix: their errors and keys follow Anthropic's conventions.
PATHS = "/v1/messages"
# Our status → Anthropic's error type. No capacity (our 503) is Anthropic's 529
# ``overloaded_error``, which its SDK and Claude Code retry with backoff.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
OVERLOADED = 529


def anthropic_status(status: int) -> int:
    """The status an Anthropic client gets for one of ours."""
    return OVERLOADED if status == 503 else status


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's envelope for an error answered with ``status``."""
    kind = ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


class SystemField(fields.Field[str | list[Any]]):
    """``system``: a string or a list of text blocks."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, (str, list)):
            return value
        raise ValidationError("Must be a string or a list of text blocks.")


class ContentField(fields.Field[str | list[Any]]):
    """A message's ``content``: a string or a list of content blocks."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(b, dict) for b in value)
        ):
            return value
        raise ValidationError("Must be a string or a list of content blocks.")


class MessageSchema(Open):
    role = fields.String(
        required=True,
        validate=validate.OneOf(("user", "assistant"), error="Must be 'user' or 'assistant'."),
    )
    content = ContentField(required=True)


class MessagesSchema(Open):
    model = fields.String(allow_none=True)
    max_tokens = StrictNumber(minimum=1, maximum=MAX_TOKENS, integer=True, required=True)
    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        validate=validate.Length(min=1, error="Must be a non-empty list."),
    )
    system = SystemField(allow_none=True)
    stream = StrictBool(allow_none=True)
    temperature = number(0, 1)
    top_p = number(0, 1)
    top_k = integer(0, None)
    stop_sequences = fields.List(fields.String(), allow_none=True)


class CountTokensSchema(Open):
    model = fields.String(allow_none=True)
    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        validate=validate.Length(min=1, error="Must be a non-empty list."),
    )
    system = SystemField(allow_none=True)


def count(answer: dict[str, Any]) -> int:
    blocks = as_dicts(answer.get("content"))
    return text_tokens(
        [block.get("text") for block in blocks] + [block.get("thinking") for block in blocks]
    )


def error_event(message: str, code: str) -> bytes:
    """An in-band error as Anthropic streams it (its SDK raises on ``event: error``)."""
    kind = "timeout_error" if code == "upstream_timeout" else "api_error"
    return named_event("error", {"type": "error", "error": {"type": kind, "message": message}})


def inspect(event: bytes, result: StreamResult) -> bytes | None:
    """Usage from ``message_start`` (input) and ``message_delta`` (output so far)."""
    name, data = read_named(event, result)
    if data is None:
        return event
    if name == b"content_block_delta":
        result.relayed_tokens += 1
    elif name == b"message_start":
        message = data.get("message")
        report = input_output(message.get("usage") if isinstance(message, dict) else None)
        if report is not None:
            result.usage = report
    elif name == b"message_delta":
        report = data.get("usage")
        if isinstance(report, dict):
            earlier = result.usage if isinstance(result.usage, dict) else {}
            prompt = report.get("input_tokens", earlier.get("prompt_tokens"))
            result.usage = {
                "prompt_tokens": prompt,
                "completion_tokens": report.get("output_tokens"),
            }
    elif name == b"message_stop":
        result.done = True
    elif name == b"error":
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        result.error = message if isinstance(message, str) else "upstream error"
    return event


FORMAT = StreamFormat(inspect, error_event, b"")


def stream(_body: dict[str, Any], _on_id: OnId | None = None) -> StreamFormat:
    return FORMAT


def max_tokens(body: dict[str, Any]) -> int | None:
    return body.get("max_tokens")


SCHEMA = MessagesSchema()
COUNT_SCHEMA = CountTokensSchema()


def prompt_tokens(body: dict[str, Any]) -> int:
    """The messages' and the system prompt's tokens, counted from their texts."""
    messages = list(as_dicts(body.get("messages")))
    system = body.get("system")
    if system is not None:
        messages.append({"content": system})
    return usage.count_prompt({"messages": messages})


MESSAGES = Wire(generation(max_tokens, prompt_tokens), answer_input_output, count, stream)
