"""marshmallow schemas for the public request bodies.

They validate the fields the API page documents (types, ranges, shapes) and let every other
field through untouched, so vLLM's extra sampling parameters reach the upstream. The loaded
result is only used for checking and for a few routing facts: the client's original body is
what gets forwarded.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# The most tokens a request may ask for: far above any context length, and small enough that a
# reservation built from it stays a 64-bit integer in every storage (Redis INCRBY, BIGINT).
MAX_TOKENS = 2**31 - 1
_INT64 = 2**63


class StrictBool(fields.Field[bool]):
    """Only JSON ``true``/``false`` (marshmallow's Boolean also takes ``"yes"``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Must be a boolean.")
        return value


class StrictNumber(fields.Field[float]):
    """A JSON number (not a string, not a boolean, not NaN) within optional bounds."""

    def __init__(
        self,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.minimum, self.maximum, self.integer = minimum, maximum, integer

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("Must be an integer." if self.integer else "Must be a number.")
        if self.integer and not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ValidationError("Must be an integer.")
            value = int(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("Must be a finite number.")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"Must be greater than or equal to {self.minimum}.")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"Must be less than or equal to {self.maximum}.")
        return value


def integer(minimum: int | None = None, maximum: int | None = None) -> StrictNumber:
    return StrictNumber(minimum=minimum, maximum=maximum, integer=True, allow_none=True)


def number(minimum: float, maximum: float) -> StrictNumber:
    return StrictNumber(minimum=minimum, maximum=maximum, allow_none=True)


class StopField(fields.Field[str | list[str]]):
    """``stop``: a string or a list of at most four strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            if len(value) > 4:
                raise ValidationError("At most 4 stop sequences are allowed.")
            if all(isinstance(item, str) for item in value):
                return value
        raise ValidationError("Must be a string or a list of at most 4 strings.")


class ContentField(fields.Field[str | list[dict[str, Any]] | None]):
    """Message content: a string, a list of content parts, or null (assistant tool calls)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("Must be a string or a list of content parts.")
        for index, part in enumerate(value):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise ValidationError(
                    {index: ["Each content part must be an object with a 'type'."]}
                )
            kind = part["type"]
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValidationError({index: ["A 'text' part needs a string 'text'."]})
            if kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str):
                    raise ValidationError(
                        {index: ["An 'image_url' part needs an image_url.url string."]}
                    )
        return value


class PromptField(fields.Field[str | list[str] | list[int] | list[list[int]]]):
    """``prompt``: a string, a list of strings, a token list, or a list of token lists."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value:
            if all(isinstance(item, str) for item in value):
                return value
            if all(_is_token_list(item) for item in value) or _is_token_list(value):
                return value
        raise ValidationError(
            "Must be a string, a non-empty list of strings, or token ids (list of integers)."
        )


def _is_token_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


class ToolChoiceField(fields.Field[str | dict[str, Any]]):
    """``tool_choice``: "none" | "auto" | "required" | {"type": "function", "function": {name}}."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value in ("none", "auto", "required"):
            return value
        function = value.get("function") if isinstance(value, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return value
        raise ValidationError(
            "Must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': …}}."
        )


class Open(Schema):
    class Meta:
        unknown = INCLUDE


class FunctionCallSchema(Open):
    name = fields.String(required=True)
    arguments = fields.String(required=True)


class ToolCallSchema(Open):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.Equal("function"))
    function = fields.Nested(FunctionCallSchema, required=True)


class MessageSchema(Open):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = ContentField(allow_none=True)
    name = fields.String()
    tool_calls = fields.List(fields.Nested(ToolCallSchema))
    tool_call_id = fields.String()

    @validates_schema
    def _content_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("content") is None and not (
            data["role"] == "assistant" and (data.get("tool_calls") or data.get("function_call"))
        ):
            raise ValidationError("Field required.", "content")
        if data["role"] == "tool" and not data.get("tool_call_id"):
            raise ValidationError(
                "A tool message needs the tool_call_id it answers.", "tool_call_id"
            )


_ROLES = frozenset(ROLES)


def _plain_message(message: Any) -> bool:
    """True only for a message MessageSchema surely accepts: text content, no tool calls."""
    if type(message) is not dict or type(message.get("content")) is not str:
        return False
    role = message.get("role")
    if type(role) is not str or role not in _ROLES or "tool_calls" in message:
        return False
    for key in ("name", "tool_call_id"):
        if key in message and type(message[key]) is not str:
            return False
    return role != "tool" or bool(message.get("tool_call_id"))


class Messages(fields.List[dict[str, Any]]):
    """Chat messages. The common ones (text content, no tool calls) are checked in plain Python,
    far cheaper than the nested schema per message; a list with any other message goes through
    the schema, which owns every error message."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Nested(MessageSchema), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if type(value) is list and all(_plain_message(m) for m in value):
            return value
        return super()._deserialize(value, attr, data, **kwargs)


class FunctionSchema(Open):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String()
    parameters = fields.Dict()
    strict = StrictBool(allow_none=True)


class ToolSchema(Open):
    type = fields.String(required=True, validate=validate.Equal("function"))
    function = fields.Nested(FunctionSchema, required=True)


class StreamOptionsSchema(Open):
    include_usage = StrictBool(allow_none=True)
    continuous_usage_stats = StrictBool(allow_none=True)


class _Sampling(Open):
    """Fields shared by chat and text completions."""

    model = fields.String(allow_none=True)
    max_tokens = integer(1, MAX_TOKENS)
    max_completion_tokens = integer(1, MAX_TOKENS)
    temperature = number(0, 2)
    top_p = number(0, 1)
    frequency_penalty = number(-2, 2)
    presence_penalty = number(-2, 2)
    n = integer(1, 128)
    best_of = integer(1, 128)
    seed = integer(-_INT64, _INT64 - 1)
    stream = StrictBool(allow_none=True)
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    stop = StopField(allow_none=True)
    logit_bias = fields.Dict(
        keys=fields.String(), values=StrictNumber(minimum=-100, maximum=100), allow_none=True
    )
    user = fields.String(allow_none=True)

    @validates_schema
    def _stream_options_need_stream(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("stream_options") is not None and not data.get("stream"):
            raise ValidationError(
                "stream_options is only allowed when stream is true.", "stream_options"
            )


class ChatCompletionSchema(_Sampling):
    messages = Messages(
        required=True, validate=validate.Length(min=1, error="Must be a non-empty list.")
    )
    tools = fields.List(fields.Nested(ToolSchema), allow_none=True)
    tool_choice = ToolChoiceField(allow_none=True)
    parallel_tool_calls = StrictBool(allow_none=True)
    logprobs = StrictBool(allow_none=True)
    top_logprobs = integer(0, 20)
    response_format = fields.Dict(allow_none=True)


class CompletionSchema(_Sampling):
    prompt = PromptField(required=True)
    echo = StrictBool(allow_none=True)
    logprobs = integer(0, 20)
    suffix = fields.String(allow_none=True)


def first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested error dict to (param path, message) of the first error."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return first_error(value, path)
        if isinstance(key, int):
            return first_error(value, f"{path}[{key}]")
        return first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(messages, list) and messages:
        head = messages[0]
        if isinstance(head, (dict, list)):
            return first_error(head, path)
        return path, str(head)
    return path, str(messages)


CHAT = ChatCompletionSchema()
COMPLETION = CompletionSchema()


@functools.lru_cache(maxsize=512)
def _schema_for(cls: type[Schema], fields: frozenset[str]) -> Schema:
    return cls(only=sorted(fields))


def errors_for(schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    """marshmallow's errors for ``body`` (empty when valid), visiting only the fields it has.

    marshmallow walks every declared field, present or not, and a typical request has few of
    them; a schema restricted to the body's declared keys (plus the required ones) gives the
    same errors. One instance per key set is kept (bounded), built once.
    """
    cls = type(schema)
    declared = cls._declared_fields
    present = frozenset(key for key in body if key in declared) | _required(cls)
    return _schema_for(cls, present).validate(body)


@functools.cache
def _required(cls: type[Schema]) -> frozenset[str]:
    return frozenset(name for name, field in cls._declared_fields.items() if field.required)
