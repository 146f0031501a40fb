"""``POST /v1/embeddings``: billed by its input, ``usage.prompt_tokens``; never streamed."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from ..schemas import Open, PromptField, integer
from .wire import Wire, prompt_only


class EmbeddingSchema(Open):
    model = fields.String(allow_none=True)
    input = PromptField(required=True)
    encoding_format = fields.String(
        allow_none=True,
        validate=validate.OneOf(("float", "base64"), error="Must be 'float' or 'base64'."),
    )
    dimensions = integer(1, 1 << 20)
    user = fields.String(allow_none=True)


def inputs(body: dict[str, Any]) -> int:
    """How many texts an ``input`` holds (each is embedded apart, each may fill a context)."""
    value = body.get("input")
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1


def _usage(answer: dict[str, Any]) -> Any:
    report = answer.get("usage")
    if not isinstance(report, dict):
        return None
    return {"prompt_tokens": report.get("prompt_tokens"), "completion_tokens": 0}


SCHEMA = EmbeddingSchema()
EMBEDDINGS = Wire(prompt_only(inputs), _usage, lambda _answer: 0)
