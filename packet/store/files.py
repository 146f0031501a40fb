"""Files (the Files API and batch outputs): their rows, and their bytes as chunk rows when
they are kept in the database. Another account's file is never found."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select

from ..extensions import db
from ..models import FileChunk, StoredFile
from ._db import _atomic, _detached


def insert_file(row: dict[str, Any], chunks: Iterable[bytes] | None) -> int:
    """Add the file's row and, unless None, its chunks, inside the caller's transaction;
    returns its size (counted from the chunks when they are given)."""
    size = 0
    if chunks is not None:
        table = FileChunk.__table__
        db.session.execute(StoredFile.__table__.insert(), [row | {"bytes": 0}])
        for seq, chunk in enumerate(chunks):
            db.session.execute(table.insert(), [{"file_id": row["id"], "seq": seq, "data": chunk}])
            size += len(chunk)
        db.session.execute(
            StoredFile.__table__.update().where(StoredFile.id == row["id"]).values(bytes=size)
        )
        return size
    db.session.execute(StoredFile.__table__.insert(), [row])
    return int(row["bytes"])


def create_file(row: dict[str, Any], chunks: Iterable[bytes] | None) -> int:
    """:func:`insert_file` in its own transaction: the row and all its bytes, or nothing."""
    with _atomic():
        return insert_file(row, chunks)


def get_file(account_id: int, file_id: str) -> StoredFile | None:
    found = db.session.execute(
        select(StoredFile).where(StoredFile.id == file_id, StoredFile.account_id == account_id)
    ).scalar_one_or_none()
    return _detached(found)


def list_files(
    account_id: int, *, purpose: str | None, after: str | None, ascending: bool, limit: int
) -> list[StoredFile]:
    """One page, newest first unless ``ascending``; ``after``: the last id of the page before."""
    query = select(StoredFile).where(StoredFile.account_id == account_id)
    if purpose:
        query = query.where(StoredFile.purpose == purpose)
    cursor = get_file(account_id, after) if after else None
    if cursor is not None:
        query = query.where(_beyond(cursor.created_at, cursor.id, ascending))
    order = (StoredFile.created_at, StoredFile.id)
    query = query.order_by(*(o if ascending else o.desc() for o in order)).limit(limit)
    rows = list(db.session.execute(query).scalars())
    for row in rows:
        db.session.expunge(row)
    db.session.rollback()
    return rows


def _beyond(created_at: datetime, file_id: str, ascending: bool) -> Any:
    if ascending:
        return or_(
            StoredFile.created_at > created_at,
            and_(StoredFile.created_at == created_at, StoredFile.id > file_id),
        )
    return or_(
        StoredFile.created_at < created_at,
        and_(StoredFile.created_at == created_at, StoredFile.id < file_id),
    )


def file_chunks(file_id: str) -> Iterator[bytes]:
    """The file's bytes, one chunk (one short query) at a time."""
    seq = 0
    while True:
        data = db.session.execute(
            select(FileChunk.data).where(FileChunk.file_id == file_id, FileChunk.seq == seq)
        ).scalar_one_or_none()
        db.session.rollback()
        if data is None:
            return
        yield bytes(data)
        seq += 1


def delete_file(account_id: int, file_id: str) -> bool:
    """Remove the file (its chunks go with it: ON DELETE CASCADE); False when the account
    has no such file."""
    with _atomic():
        gone = db.session.execute(
            delete(StoredFile).where(StoredFile.id == file_id, StoredFile.account_id == account_id)
        )
    return bool(getattr(gone, "rowcount", 0))
