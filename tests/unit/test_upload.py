"""Multipart uploads: decoded as they arrive, the file spooled, re-encoded for the upstream."""

from __future__ import annotations

import io

import pytest
from urllib3 import encode_multipart_formdata

from packet.errors import InvalidRequest, PayloadTooLarge
from packet.upload import SPOOL_MEMORY, receive

AUDIO = bytes(range(256)) * 40  # 10 KB of every byte value, CRLF and dashes included


def form(audio: bytes = AUDIO, **fields: str) -> tuple[bytes, str]:
    parts: dict[str, object] = dict(fields)
    parts["file"] = ("talk.wav", audio, "audio/wav")
    return encode_multipart_formdata(parts)


def reader(body: bytes, step: int = 1000):
    """A client that sends its body in small pieces."""
    stream = io.BytesIO(body)
    return lambda size: stream.read(min(size, step))


def test_fields_are_kept_and_the_file_spooled_whole():
    body, kind = form(model="whisper", language="en", stream="true")
    upload = receive(reader(body), kind, limit=1 << 20)
    assert upload.fields == {"model": "whisper", "language": "en", "stream": "true"}
    assert upload.parsed()["stream"] is True
    assert (upload.file_field, upload.filename, upload.file_type) == (
        "file",
        "talk.wav",
        "audio/wav",
    )
    upload.spool.seek(0)
    assert upload.spool.read() == AUDIO and upload.size == len(AUDIO)


def test_a_large_file_goes_to_disk_not_memory():
    audio = b"x" * (SPOOL_MEMORY + 1)
    body, kind = form(audio)
    upload = receive(reader(body, 65536), kind, limit=len(audio))
    assert upload.spool._rolled  # type: ignore[attr-defined]  # SpooledTemporaryFile on disk
    upload.close()


def test_the_upstream_body_carries_the_new_fields_and_the_same_file_each_time():
    body, kind = form(model="auto", prompt='say "hi"')
    upload = receive(reader(body), kind, limit=1 << 20)
    sent = upload.body(upload.parsed() | {"model": "whisper-1", "stream": False})
    first = b"".join(iter(sent))
    assert len(first) == len(sent)
    sent.rewind()
    pieces = []
    while piece := sent.read(4096):
        pieces.append(piece)
    assert b"".join(pieces) == first
    again = receive(reader(first), upload.content_type, limit=1 << 20)
    assert again.fields == {"model": "whisper-1", "prompt": 'say "hi"', "stream": "false"}
    again.spool.seek(0)
    assert again.spool.read() == AUDIO


def test_a_file_over_the_limit_is_413_as_soon_as_it_passes_it():
    body, kind = form()
    with pytest.raises(PayloadTooLarge):
        receive(reader(body), kind, limit=len(AUDIO) - 1)


@pytest.mark.parametrize(
    "body, kind",
    [
        (b'{"model": "whisper"}', "application/json"),
        (b"", "multipart/form-data"),  # no boundary
        (encode_multipart_formdata({"model": "whisper"})[0], None),  # no file
    ],
)
def test_not_a_form_with_a_file_is_400_naming_file(body, kind):
    if kind is None:
        body, kind = encode_multipart_formdata({"model": "whisper"})
    with pytest.raises(InvalidRequest) as caught:
        receive(reader(body), kind, limit=1 << 20)
    assert caught.value.param == "file"


def test_a_body_cut_short_or_malformed_is_400():
    body, kind = form()
    with pytest.raises(InvalidRequest, match="ended before"):
        receive(reader(body[: len(body) // 2]), kind, limit=1 << 20)
    boundary = kind.split("boundary=")[1]
    broken = f"--{boundary}\r\nno headers here".encode() + b"x" * 70000
    with pytest.raises(PayloadTooLarge):  # a part's headers that never end
        receive(reader(broken), kind, limit=1 << 20)
