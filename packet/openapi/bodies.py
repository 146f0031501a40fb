"""Request bodies in the document: our marshmallow schemas' names and custom fields.

apispec's Marshmallow plugin converts the built-in fields; the custom ones are plain
marshmallow Fields with their own checks, which it cannot see into, so their JSON Schemas are
given here (kept beside the checks' rules they restate: ranges, shapes, list lengths).
"""

from __future__ import annotations

from typing import Any

from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec.ext.marshmallow.field_converter import FieldConverterMixin
from marshmallow import Schema, fields

from .. import schemas
from ..gateway import routes
from ..gateway.inbound import Route
from ..protocol import audio, messages, responses, scoring, tokenizer

_STRINGS = {"type": "array", "items": {"type": "string"}}
_TOKENS = {"type": "array", "items": {"type": "integer"}}
_OBJECTS = {"type": "array", "items": {"type": "object"}}
# JSON Schemas of the custom fields (plain marshmallow Fields, which apispec cannot see into).
FIELD_SHAPES: dict[type[fields.Field[Any]], dict[str, Any]] = {
    schemas.StrictBool: {"type": "boolean"},
    schemas.StopField: {"anyOf": [{"type": "string"}, {**_STRINGS, "maxItems": 4}]},
    schemas.ContentField: {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "required": ["type"]}},
        ]
    },
    schemas.PromptField: {
        "anyOf": [
            {"type": "string"},
            {**_STRINGS, "minItems": 1},
            {**_TOKENS, "minItems": 1},
            {"type": "array", "items": {**_TOKENS, "minItems": 1}, "minItems": 1},
        ]
    },
    schemas.ToolChoiceField: {
        "anyOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {"type": "object", "required": ["function"]},
        ]
    },
    messages.SystemField: {"anyOf": [{"type": "string"}, _OBJECTS]},
    messages.ContentField: {"anyOf": [{"type": "string"}, _OBJECTS]},
    responses.InputField: {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1}]},
    scoring.DocumentsField: {
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": [{"type": "string"}, {"type": "object"}]},
    },
    tokenizer.TokensField: _TOKENS,
    audio.FormBool: {"type": "string", "enum": ["true", "false"]},
    audio.FormNumber: {"type": "string", "description": "A number, as a form field."},
}
# The upload of a multipart route's form, beside its text fields.
FILE = {"type": "string", "format": "binary", "description": "The audio file."}


def schema_name(schema: type[Schema] | Schema) -> str:
    """``ChatCompletionRequest`` for a route's body, ``Message`` for a nested schema; the
    Anthropic family's nested schemas are prefixed, their names clash with OpenAI's."""
    cls = resolve_schema_cls(schema)
    cls = cls[0] if isinstance(cls, list) else cls
    name = cls.__name__.removesuffix("Schema")
    if cls in _BODIES:
        return name + "Request"
    return "Anthropic" + name if cls.__module__ == messages.__name__ else name


# The schemas of request bodies (named ``…Request``): those of the declared routes.
_BODIES = {
    type(value.schema)
    for value in vars(routes).values()
    if isinstance(value, Route) and value.schema is not None
}


def custom_field(
    self: FieldConverterMixin, field: fields.Field[Any], **kwargs: Any
) -> dict[str, Any]:
    """apispec attribute function: the JSON Schema of our own field classes, null included."""
    if isinstance(field, schemas.StrictNumber):
        shape: dict[str, Any] = {"type": "integer" if field.integer else "number"}
        if field.minimum is not None:
            shape["minimum"] = field.minimum
        if field.maximum is not None:
            shape["maximum"] = field.maximum
    else:
        found = [s for cls, s in FIELD_SHAPES.items() if isinstance(field, cls)]
        if not found:
            return {}
        shape = dict(found[0])
    if field.allow_none:
        if "type" in shape:
            shape["type"] = [shape["type"], "null"]
        else:
            shape["anyOf"] = [*shape["anyOf"], {"type": "null"}]
    return shape
