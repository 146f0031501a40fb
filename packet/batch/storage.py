"""Where a file's bytes live, behind one small interface: database chunk rows by default
(works on SQLite, PostgreSQL and a dyno whose disk is ephemeral)."""

from __future__ import annotations

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


class DatabaseStorage:
    """Chunks of ``CHUNK`` bytes in ``file_chunks``, written with the file's row."""

    kind = "db"

    def stage(self, file_id: str, source: IO[bytes]) -> Iterable[bytes] | None:
        source.seek(0)
        return iter(lambda: source.read(CHUNK), b"")

    def open(self, file_id: str) -> Iterator[bytes]:
        return store.file_chunks(file_id)


def storage_for(settings: Settings) -> FileStorage:
    """The storage files go to."""
    return DatabaseStorage()
