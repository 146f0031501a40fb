"""OpenAI's Responses API: named stream events, usage as ``input_tokens``/``output_tokens``.

A stored response lives on the replica that made it; the gateway learns each response's id
from the answer (or the stream's first event) to send its follow-ups there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError, fields

from .. import usage
from ..schemas import Open, StrictBool, number
from ..schemas import integer as integer_field
from ..upstream.sse import StreamFormat, StreamResult, named_event, read_named
from .wire import Wire, answer_input_output, as_dicts, generation, input_output, text_tokens

# Events whose data carries the finished response (and its usage): the stream ends there.
FINAL = (b"response.completed", b"response.incomplete", b"response.failed")
# Events that each carry at least one generated token.
DELTAS = (
    b"response.output_text.delta",
    b"response.reasoning_text.delta",
    b"response.function_call_arguments.delta",
    b"response.refusal.delta",
)


class InputField(fields.Field[str | list[Any]]):
    """``input``: a string or a list of input items."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, list) and value):
            return value
        raise ValidationError("Must be a string or a non-empty list of input items.")


class ResponseSchema(Open):
    model = fields.String(allow_none=True)
    input = InputField(required=True)
    instructions = fields.String(allow_none=True)
    max_output_tokens = integer_field(1, 2**31 - 1)
    temperature = number(0, 2)
    top_p = number(0, 1)
    stream = StrictBool(allow_none=True)
    store = StrictBool(allow_none=True)
    background = StrictBool(allow_none=True)
    previous_response_id = fields.String(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)
    user = fields.String(allow_none=True)


def count(answer: dict[str, Any]) -> int:
    """Output tokens guessed from a response's output texts."""
    texts = []
    for item in as_dicts(answer.get("output")):
        texts.append(item.get("arguments"))
        texts.extend(part.get("text") for part in as_dicts(item.get("content")))
    return text_tokens(texts)


def error_event(message: str, code: str) -> bytes:
    """An in-band error as the Responses stream sends it (the SDK's ``ResponseErrorEvent``)."""
    return named_event(
        "error",
        {"type": "error", "code": code, "message": message, "param": None, "sequence_number": 0},
    )


def stream_format(_body: dict[str, Any], on_id: Callable[[str], None] | None) -> StreamFormat:
    """The Responses stream, relayed as it comes; ``on_id`` hears the response's id as soon as
    the first event names it (a follow-up may be sent before this stream is over)."""
    heard: list[str] = []

    def inspect(event: bytes, result: StreamResult) -> bytes | None:
        name, data = read_named(event, result)
        if data is None:
            return event
        if name in DELTAS:
            result.relayed_tokens += 1
            return event
        response = data.get("response")
        if isinstance(response, dict):
            if on_id is not None and not heard and isinstance(response.get("id"), str):
                heard.append(response["id"])
                on_id(response["id"])
            if response.get("usage") is not None:
                result.usage = input_output(response["usage"])
        if name in FINAL:
            result.done = True
            if name == b"response.failed":
                error = response.get("error") if isinstance(response, dict) else None
                result.error = _message(error, "The response failed.")
        elif name == b"error":
            result.error = _message(data, "upstream error")
        return event

    return StreamFormat(inspect, error_event, b"")


def _message(error: Any, default: str) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else default


def max_output_tokens(body: dict[str, Any]) -> int | None:
    return body.get("max_output_tokens")


SCHEMA = ResponseSchema()


def prompt_tokens(body: dict[str, Any]) -> int | None:
    """The input's tokens counted from its texts; None when it continues a stored response
    (whose context only the upstream knows)."""
    if body.get("previous_response_id"):
        return None
    value = body.get("input")
    items = [{"content": value}] if isinstance(value, str) else as_dicts(value)
    messages = [{"content": item.get("content") or item.get("output")} for item in items]
    if isinstance(body.get("instructions"), str):
        messages.append({"content": body["instructions"]})
    return usage.count_prompt({"messages": messages})


RESPONSES = Wire(
    generation(max_output_tokens, prompt_tokens), answer_input_output, count, stream_format
)
