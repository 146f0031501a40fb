"""vLLM's speech to text: ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``,
multipart forms whose ``file`` is read in chunks and only counted (its size is the audio).

A whole answer (``json``, ``verbose_json``) reports usage as vLLM does, by duration:
``{"type": "duration", "seconds": S}``, S = size // 32000 + 1 (16 kHz 16-bit mono); it
carries no tokens, so the record has prompt_tokens = completion_tokens = 0 (and
``audio_seconds`` S); ``text`` has no usage at all. A stream (``stream=true``) ends, when
``stream_include_usage`` asks, with ``{"prompt_tokens": P, "completion_tokens": M,
"total_tokens": P+M}``, P = size // 1000 + 1: that stream's record has P and M (the words
sent). The text is M = size // 1000 words, at least 1, at most 4 × ``default_tokens``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from typing import IO, TYPE_CHECKING, Any, cast

from werkzeug.formparser import parse_form_data

from packet.devserver.protocol import DONE, ApiError, frame, new_id, respond, sse, usage
from packet.devserver.request import Generation, generation, served_model
from packet.devserver.streaming import Stream, disconnected, paced, prefill
from packet.devserver.tokens import words

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator

FORMATS = ("json", "text", "verbose_json")
BYTES_PER_SECOND = 32000
BYTES_PER_TOKEN = 1000


class Counter(io.RawIOBase):
    """Where the upload goes: nowhere, its bytes counted as the parser writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0


def transcribe(app: Simulator, environ: dict[str, Any], start_response: Any, *, task: str) -> Any:
    """Read the form (the file counted in chunks), then answer in the asked format."""
    counters: list[Counter] = []

    def sink(
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        counters.append(Counter())
        return cast("IO[bytes]", counters[-1])  # only written to, and sought back to 0

    _, form, files = parse_form_data(environ, stream_factory=sink)
    if "file" not in files or not counters:
        raise ApiError(400, "file: Field required", param="file")
    fields = {name: form.get(name) for name in form}
    model = served_model(fields, app.settings)
    size, fmt = counters[0].size, fields.get("response_format") or "json"
    if fmt not in FORMATS:
        raise ApiError(400, f"response_format should be one of {', '.join(FORMATS)}.")
    stream = _flag(fields, "stream")
    include = _flag(fields, "stream_include_usage")
    if include and not stream:
        raise ApiError(400, "Stream options can only be defined when `stream=True`.")
    count = min(max(1, size // BYTES_PER_TOKEN), app.settings.default_tokens * 4)
    seconds = size // BYTES_PER_SECOND + 1
    body = fields | {"file_bytes": size}
    if stream:
        gen = generation(
            {},
            app.settings,
            model=model,
            prompt_tokens=size // BYTES_PER_TOKEN + 1,
            max_tokens=count,
            stream=True,
            id=new_id("trsc-"),
            include_usage=include and not app.settings.no_stream_usage,
        )
        record = app.record(
            environ, body, model=model, stream=True, prompt_tokens=gen.prompt_tokens
        )
        client = environ.get("sim.socket")
        return sse(start_response, _events(Stream(gen, record, client, app.sleep)))
    record = app.record(environ, body, model=model, finished=True)
    record["audio_seconds"] = seconds
    text = " ".join(words(count))
    if fmt == "text":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [text.encode()]
    answer: dict[str, Any] = {"text": text, "usage": {"type": "duration", "seconds": seconds}}
    if fmt == "verbose_json":
        language = fields.get("language") or "en"
        segment = {"id": 0, "start": 0.0, "end": float(seconds), "text": text}
        answer = {"task": task, "language": language, "duration": str(seconds)} | answer
        answer["segments"] = [segment]
    return respond(start_response, 200, answer)


def _flag(fields: dict[str, Any], name: str) -> bool:
    value = (fields.get(name) or "false").lower()
    if value not in ("true", "false"):
        raise ApiError(400, f"{name} should be true or false.", param=name)
    return value == "true"


def _events(stream: Stream) -> Iterator[bytes]:
    """vLLM's ``transcription.chunk`` per word (the last one finished: ``stop``), then the
    usage chunk with no choices (if asked), then ``[DONE]``."""
    gen, record = stream.gen, stream.record
    try:
        prefill(stream)
        for sent, piece in paced(stream):
            finish = "stop" if sent == gen.max_tokens else None
            yield _chunk(
                gen, [{"delta": {"content": piece}, "finish_reason": finish, "stop_reason": None}]
            )
        if record["disconnected"]:
            return
        if gen.include_usage:
            final = usage(gen.prompt_tokens, gen.max_tokens)
            yield frame(_head(gen) | {"choices": [], "usage": final})
        yield DONE
        record["finished"] = True
    except GeneratorExit:
        disconnected(record)
        raise


def _head(gen: Generation) -> dict[str, Any]:
    return {
        "id": gen.id,
        "object": "transcription.chunk",
        "created": gen.created,
        "model": gen.model,
    }


def _chunk(gen: Generation, choices: list[dict[str, Any]]) -> bytes:
    return frame(_head(gen) | {"choices": choices})


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/audio/transcriptions"): partial(transcribe, task="transcribe"),
    ("POST", "/v1/audio/translations"): partial(transcribe, task="translate"),
}
