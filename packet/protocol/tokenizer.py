"""vLLM's ``/tokenize`` and ``/detokenize``: counted against requests/min, no tokens charged."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

from ..schemas import Open, StrictBool


class TokensField(fields.Field[list[int]]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in value
        ):
            return value
        raise ValidationError("Must be a list of token ids (integers).")


class TokenizeSchema(Open):
    """A ``prompt`` or chat ``messages`` (vLLM takes either)."""

    model = fields.String(allow_none=True)
    prompt = fields.String(allow_none=True)
    messages = fields.List(fields.Dict(), allow_none=True)
    add_special_tokens = StrictBool(allow_none=True)
    return_token_strs = StrictBool(allow_none=True)


class DetokenizeSchema(Open):
    model = fields.String(allow_none=True)
    tokens = TokensField(required=True)


TOKENIZE_SCHEMA = TokenizeSchema()
DETOKENIZE_SCHEMA = DetokenizeSchema()
