"""vLLM's rerank (Jina/Cohere style) and score routes: billed by their input, from ``usage``."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

from ..schemas import Open, StrictBool, integer
from .wire import Wire, prompt_only


class DocumentsField(fields.Field[list[Any]]):
    """``documents``: a non-empty list of strings or of ``{"text": …}`` objects."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(d, (str, dict)) for d in value):
            return value
        raise ValidationError("Must be a non-empty list of strings or objects.")


class RerankSchema(Open):
    model = fields.String(allow_none=True)
    query = fields.Raw(required=True)
    documents = DocumentsField(required=True)
    top_n = integer(0, None)
    return_documents = StrictBool(allow_none=True)


class ScoreSchema(Open):
    """``text_1``/``text_2`` (a string or a list each), or ``queries``/``documents`` as newer
    vLLM takes them: checked upstream, since the two spellings cannot both be required here."""

    model = fields.String(allow_none=True)


def _texts(body: dict[str, Any]) -> int:
    """Pairs scored: each pair may fill a context."""
    most = 1
    for name in ("documents", "text_2", "text_1", "queries"):
        value = body.get(name)
        if isinstance(value, list):
            most = max(most, len(value))
    return most


def _usage(answer: dict[str, Any]) -> Any:
    report = answer.get("usage")
    if not isinstance(report, dict):
        return None
    prompt = report.get("prompt_tokens")
    return {
        "prompt_tokens": report.get("total_tokens") if prompt is None else prompt,
        "completion_tokens": 0,
    }


RERANK_SCHEMA = RerankSchema()
SCORE_SCHEMA = ScoreSchema()
SCORING = Wire(prompt_only(_texts), _usage, lambda _answer: 0)
