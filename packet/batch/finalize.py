"""A batch's end: its output and error files assembled from its lines, its final status."""

from __future__ import annotations

import tempfile
from datetime import datetime
from typing import IO, Any

import orjson

from .. import store
from ..models import utcnow
from ..protocol.batches import failed_line
from ..protocol.files import OUTPUT_PURPOSE, new_id
from .storage import FileStorage

SPOOL_MEMORY = 1 << 20
UNANSWERED = {
    "expired": ("batch_expired", "This request could not be executed before the batch expired."),
    "cancelled": ("batch_cancelled", "This request was not executed: the batch was cancelled."),
}


def finalize(storage: FileStorage, batch_id: str, owner: str) -> bool:
    """Write the files and the final status; False when another worker took the batch."""
    store.begin_finalizing(batch_id)
    batch = store.get_batch(None, batch_id)
    if batch is None:
        return False
    with (
        tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as out,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as err,
    ):
        for _line, custom_id, state, result in store.results(batch_id):
            if state == "done" and result is not None:
                out.write(result.encode() + b"\n")
            elif state in UNANSWERED:
                err.write(orjson.dumps(failed_line(custom_id, *UNANSWERED[state])) + b"\n")
            elif result is not None:
                err.write(result.encode() + b"\n")
        now = utcnow()
        values: dict[str, Any] = _ending(batch.status, batch.expired_at, now)
        files = []
        for spool, field, suffix in (
            (out, "output_file_id", "output"),
            (err, "error_file_id", "error"),
        ):
            if spool.tell():
                row = _file_row(batch.account_id, f"{batch_id}_{suffix}.jsonl", spool, storage, now)
                values[field] = row[0]["id"]
                files.append(row)
        return store.finish_batch(batch_id, owner, files, values)


def _ending(status: str, expired_at: datetime | None, now: datetime) -> dict[str, Any]:
    if status == "cancelling":
        return {"status": "cancelled", "cancelled_at": now}
    if expired_at is not None:
        return {"status": "expired"}
    return {"status": "completed", "completed_at": now}


def _file_row(
    account_id: int, filename: str, spool: IO[bytes], storage: FileStorage, now: datetime
) -> tuple[dict[str, Any], Any]:
    file_id = new_id()
    size = spool.tell()
    chunks = storage.stage(file_id, spool)
    row = {
        "id": file_id,
        "account_id": account_id,
        "filename": filename,
        "purpose": OUTPUT_PURPOSE,
        "bytes": size,
        "storage": storage.kind,
        "created_at": now,
    }
    return row, chunks
