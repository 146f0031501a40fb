"""Where a file's bytes live, behind one small interface: database chunk rows by default
(works on SQLite, PostgreSQL and a dyno whose disk is ephemeral), or a bucket
(:mod:`packet.batch.bucket`). Each file's row says which holds it."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import IO, Protocol

from .. import store
from ..config import Settings

CHUNK = 1 << 20


class FileStorage(Protocol):
    kind: str

    def stage(self, file_id: str, source: IO[bytes]) -> Iterable[bytes] | None:
        """Take the file's bytes from ``source``; what the file's row is written with (chunks
        the store writes in the same transaction), or None when they are kept elsewhere."""

    def open(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes, a chunk at a time."""

    def remove(self, file_id: str) -> None:
        """Forget the bytes of a file whose row was deleted."""


class DatabaseStorage:
    """Chunks of ``CHUNK`` bytes in ``file_chunks``, written with the file's row."""

    kind = "db"

    def stage(self, file_id: str, source: IO[bytes]) -> Iterable[bytes] | None:
        source.seek(0)
        return iter(lambda: source.read(CHUNK), b"")

    def open(self, file_id: str) -> Iterator[bytes]:
        return store.file_chunks(file_id)

    def remove(self, file_id: str) -> None:
        """Nothing: the chunk rows went with the file's row."""


def storage_for(settings: Settings, kind: str | None = None) -> FileStorage:
    """The storage of ``kind`` (a file row's ``storage``), or the one new files go to."""
    if kind is None:
        kind = "s3" if settings.files_url else "db"
    if kind == "db":
        return DatabaseStorage()
    if not settings.files_url:
        raise RuntimeError("this file is in a bucket, but PACKET_FILES_URL is not set")
    return _bucket(settings.files_url)


@functools.cache
def _bucket(url: str) -> FileStorage:
    """One client per bucket URL and process (boto3 clients are thread-safe, and costly)."""
    from .bucket import BucketStorage

    return BucketStorage(url)
