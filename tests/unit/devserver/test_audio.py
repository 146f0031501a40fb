"""Transcriptions and translations: multipart forms read in chunks, vLLM's duration usage,
and its stream of ``transcription.chunk`` ending with usage and ``[DONE]``."""

import io

import pytest

from unit.devserver.wsgi import assert_vllm_error, call, last_record, simulator

PATH = "/v1/audio/transcriptions"
BOUNDARY = "simboundary"


def form(file: bytes | None, **fields: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    if file is not None:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n".encode()
            + file
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Reads(io.BytesIO):
    """An input that remembers the size of every read."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.sizes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.sizes.append(len(chunk))
        return chunk

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def upload(app, raw: bytes, path: str = PATH, stream=None):
    return call(
        app,
        "POST",
        path,
        raw,
        stream=stream,
        CONTENT_TYPE=f"multipart/form-data; boundary={BOUNDARY}",
    )


@pytest.mark.parametrize("path", [PATH, "/v1/audio/translations"])
def test_json_reports_duration_and_the_record_no_tokens(path):
    app = simulator()
    answer = upload(app, form(b"x" * 5000, model="simulated/vllm-demo"), path)
    assert answer.status == 200
    assert answer.json() == {
        "text": "This reply comes from the",
        "usage": {"type": "duration", "seconds": 1},
    }
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (0, 0)
    assert record["audio_seconds"] == 1 and record["finished"] and record["path"] == path


def test_the_upload_is_read_in_chunks_not_whole():
    app = simulator()
    raw = form(b"\0" * 3_000_000)
    reads = Reads(raw)
    answer = upload(app, raw, stream=reads)
    assert answer.status == 200
    assert len(answer.json()["text"].split()) == 64  # capped: 4 × default_tokens
    assert max(reads.sizes) < 1_000_000 and sum(reads.sizes) == len(raw)


def test_text_and_verbose_json():
    app = simulator()
    text = upload(app, form(b"x" * 2000, response_format="text"))
    assert text.body == b"This reply"
    verbose = upload(app, form(b"x", response_format="verbose_json", language="fr")).json()
    assert verbose["language"] == "fr" and verbose["text"] == "This"
    assert verbose["usage"] == {"type": "duration", "seconds": 1}


def test_the_stream_is_chunks_then_usage_then_done_and_the_record_matches():
    app = simulator()
    answer = upload(app, form(b"x" * 3000, stream="true", stream_include_usage="true"))
    events = [data for _, data in answer.events()]
    assert events[-1] == "[DONE]"
    chunks, final = events[:-2], events[-2]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["This", " reply", " comes"]
    assert all(c["object"] == "transcription.chunk" and c["id"].startswith("trsc-") for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert final["choices"] == []
    assert final["usage"] == {"prompt_tokens": 4, "total_tokens": 7, "completion_tokens": 3}
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"], record["finished"]) == (
        4,
        3,
        True,
    )


@pytest.mark.parametrize(
    "raw",
    [
        form(None, model="simulated/vllm-demo"),
        form(b"x", model="missing/model"),
        form(b"x", response_format="srt-ish"),
        form(b"x", stream="maybe"),
        form(b"x", stream_include_usage="true"),
        b"not a form at all",
        b"",
    ],
)
def test_a_bad_form_is_a_4xx_in_vllms_shape(raw):
    assert_vllm_error(upload(simulator(), raw))
