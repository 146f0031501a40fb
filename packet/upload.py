"""A multipart upload (an audio file and its form fields), spooled and sent on as a stream.

The client's body is decoded as it arrives: its small text fields are kept, its file is
written to a spool (in memory up to ``SPOOL_MEMORY`` bytes, on disk beyond), so a 25 MB file
is never held whole in memory. The upstream gets a multipart body of our own making, with the
resolved model in place of the client's and the file read back from the spool as it is sent;
a spool can be read again, so failing over to another replica resends the same bytes.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from .errors import InvalidRequest, PayloadTooLarge

SPOOL_MEMORY = 1 << 20
CHUNK = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024  # every text field together


@dataclass
class Upload:
    """The form's text fields, its one file (field name, file name, content type) spooled,
    and the file's size."""

    fields: dict[str, str]
    file_field: str
    filename: str
    file_type: str
    spool: IO[bytes]
    size: int
    boundary: str = field(default_factory=lambda: "packet-" + secrets.token_hex(16))

    def parsed(self) -> dict[str, Any]:
        """The fields as the pipeline reads a body: ``stream`` a boolean, the rest strings."""
        body: dict[str, Any] = dict(self.fields)
        if "stream" in body:
            body["stream"] = body["stream"].lower() in ("true", "1")
        return body

    def body(self, fields: dict[str, Any]) -> MultipartBody:
        """The body to send upstream: ``fields`` (a parsed body, changed), then the file."""
        head = bytearray()
        for name, value in fields.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif not isinstance(value, str):
                continue
            head += self._part(f'name="{_quoted(name)}"', "") + value.encode() + b"\r\n"
        disposition = f'name="{_quoted(self.file_field)}"; filename="{_quoted(self.filename)}"'
        head += self._part(disposition, f"Content-Type: {self.file_type}\r\n")
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        return MultipartBody(bytes(head), self.spool, self.size, tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def close(self) -> None:
        self.spool.close()

    def _part(self, disposition: str, headers: str) -> bytes:
        return (
            f"--{self.boundary}\r\nContent-Disposition: form-data; {disposition}\r\n{headers}\r\n"
        ).encode()


class MultipartBody:
    """A file-like body of known length (``requests`` sends it with a Content-Length, reading
    it in blocks); each iteration starts again from the first byte."""

    def __init__(self, head: bytes, spool: IO[bytes], size: int, tail: bytes) -> None:
        self.head, self.spool, self.size, self.tail = head, spool, size, tail
        self._chunks: Iterator[bytes] = iter(self)
        self._buffer = b""

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        self.spool.seek(0)
        while chunk := self.spool.read(CHUNK):
            yield chunk
        yield self.tail

    def rewind(self) -> None:
        """Start over: the next read gives the first byte again (another replica)."""
        self._chunks, self._buffer = iter(self), b""

    def read(self, size: int = -1) -> bytes:
        if not self._buffer:
            self._buffer = next(self._chunks, b"")
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
            return out
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def receive(
    read: Callable[[int], bytes], content_type: str, limit: int, chunk_size: int = CHUNK
) -> Upload:
    """Decode a ``multipart/form-data`` body read ``chunk_size`` bytes at a time from
    ``read``; 400 when it is not one or holds no file, 413 when its file exceeds ``limit``
    bytes."""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if mimetype != "multipart/form-data" or not boundary:
        raise InvalidRequest(
            "Send the audio as multipart/form-data, with the file in the 'file' field.",
            param="file",
        )
    decoder = MultipartDecoder(boundary.encode(), max_form_memory_size=MAX_FIELD_BYTES)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - the Upload's
    parts = _Parts(spool, limit)
    try:
        while not parts.complete:
            chunk = read(chunk_size)
            parts.take(decoder, chunk)
            if not chunk and not parts.complete:
                raise InvalidRequest("The multipart body ended before it was complete.")
    except BaseException:
        spool.close()
        raise
    if parts.file is None:
        spool.close()
        raise InvalidRequest("The request has no file: send it in the 'file' field.", param="file")
    name, filename, file_type = parts.file
    return Upload(parts.fields, name, filename, file_type, spool, parts.size)


class _Parts:
    """What the decoder's events say, as they come: fields kept, the first file spooled."""

    def __init__(self, spool: IO[bytes], limit: int) -> None:
        self.spool, self.limit = spool, limit
        self.fields: dict[str, str] = {}
        self.file: tuple[str, str, str] | None = None
        self.size = 0
        self.complete = False
        self._current: str | None = None  # the text field being read; None: the file or a skip
        self._spooling = False
        self._value = bytearray()

    def take(self, decoder: MultipartDecoder, chunk: bytes) -> None:
        """Feed one chunk (empty: the end) and act on the events it completes."""
        try:
            decoder.receive_data(chunk or None)
            while not isinstance(event := decoder.next_event(), NeedData):
                self._on(event)
                if isinstance(event, Epilogue):
                    self.complete = True
                    return
        except ValueError:  # werkzeug's decoder refuses a malformed form
            raise InvalidRequest(
                "The multipart body is malformed or ended before it was complete."
            ) from None
        except RequestEntityTooLarge:
            raise PayloadTooLarge(
                f"The form's text fields are larger than {MAX_FIELD_BYTES} bytes."
            ) from None

    def _on(self, event: object) -> None:
        if isinstance(event, File):
            self._current, self._spooling = None, self.file is None
            if self._spooling:
                kind = event.headers.get("Content-Type", "application/octet-stream")
                self.file = (event.name, event.filename or "audio", kind)
        elif isinstance(event, Field):
            self._current, self._spooling = event.name, False
            self._value.clear()
        elif isinstance(event, Data):
            if self._spooling:
                self.size += len(event.data)
                if self.size > self.limit:
                    raise PayloadTooLarge(f"The file is larger than {self.limit} bytes.")
                self.spool.write(event.data)
            elif self._current is not None:
                self._value += event.data
                if not event.more_data:
                    self.fields[self._current] = self._value.decode("utf-8", "replace")


def _quoted(value: str) -> str:
    """A name or file name inside a quoted header parameter (no quote, no line break)."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")
