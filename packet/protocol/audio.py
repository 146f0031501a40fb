"""Transcriptions and translations: a multipart form, answered as JSON or as plain text.

The form's fields are strings. A streamed transcript is chat-like chunks
(``choices[].delta.content``) and the gateway asks for the final usage chunk
(``stream_include_usage``), stripped again when the client did not ask for it. vLLM reports a
whole answer's usage in tokens or only as a duration; without tokens, the transcript's are
counted (the audio itself is not billed as a prompt).
"""

from __future__ import annotations

import math
from typing import Any

from marshmallow import ValidationError, fields, validate

from ..schemas import Open
from ..upstream.sse import CHAT_FORMATS, StreamFormat
from ..usage import Bounds
from .wire import Estimate, OnId, Wire, input_output, text_tokens

FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
TRUE, FALSE = ("true", "1"), ("false", "0")
# A generous bound on transcript tokens per byte of audio (about 200 tokens a minute of speech
# in a low-bitrate file of ~45 KB a minute): it caps the money held, not what is billed.
BYTES_PER_TOKEN = 200


class FormBool(fields.Field[bool]):
    """A form field holding ``true`` or ``false``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, str) and value.lower() in TRUE + FALSE:
            return value.lower() in TRUE
        raise ValidationError("Must be 'true' or 'false'.")


class FormNumber(fields.Field[float]):
    """A form field holding a number within bounds."""

    def __init__(self, minimum: float, maximum: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValidationError("Must be a number.") from None
        if not (math.isfinite(number) and self.minimum <= number <= self.maximum):
            raise ValidationError(f"Must be between {self.minimum:g} and {self.maximum:g}.")
        return number


class TranscriptionSchema(Open):
    model = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    prompt = fields.String(allow_none=True)
    response_format = fields.String(
        validate=validate.OneOf(FORMATS, error="Must be one of: " + ", ".join(FORMATS) + ".")
    )
    temperature = FormNumber(0, 1)
    stream = FormBool()
    stream_include_usage = FormBool()


def estimate(body: dict[str, Any], size: int, context: int, default: int) -> Estimate:
    """``size`` is the audio's: the transcript's length is bounded by it, not by a context."""
    cap = context + size // BYTES_PER_TOKEN
    return Estimate(min(default, cap), 0, cap, Bounds(cap, cap))


def _usage(answer: dict[str, Any]) -> Any:
    report = answer.get("usage")
    if not isinstance(report, dict):
        return None
    if report.get("type") == "tokens":
        return input_output(report)
    if "completion_tokens" in report:
        return {
            "prompt_tokens": report.get("prompt_tokens", 0),
            "completion_tokens": report["completion_tokens"],
        }
    return None  # a duration: no tokens reported


def count(answer: dict[str, Any]) -> int:
    return text_tokens([answer.get("text")])


def stream(body: dict[str, Any], _on_id: OnId | None = None) -> StreamFormat:
    """Ask for the usage chunk; relay it only if the client asked."""
    asked = str(body.get("stream_include_usage", "")).lower() in TRUE
    body["stream_include_usage"] = "true"
    return CHAT_FORMATS[asked, False]


SCHEMA = TranscriptionSchema()
AUDIO = Wire(estimate, _usage, count, stream, text_answers=True)
