"""Creating, showing and cancelling batches: what the API views, the CLI and the admin API
share."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from .. import store
from ..config import Settings
from ..errors import InvalidRequest, NotFound
from ..models import BatchJob, utcnow
from ..protocol.batches import batch_object, new_id


def create(
    settings: Settings, account_id: int, key_id: int | None, body: dict[str, Any]
) -> BatchJob:
    """A new batch, ``validating``: a worker checks its file before any line runs."""
    file = store.get_file(account_id, body["input_file_id"])
    if file is None:
        raise InvalidRequest(
            f"No file with id '{body['input_file_id']}' found.", param="input_file_id"
        )
    if file.purpose != "batch":
        raise InvalidRequest(
            "The input file must have been uploaded with purpose 'batch'.", param="input_file_id"
        )
    now = utcnow()
    metadata = body.get("metadata")
    return store.create_batch(
        {
            "id": new_id(),
            "account_id": account_id,
            "key_id": key_id,
            "endpoint": body["endpoint"],
            "input_file_id": file.id,
            "completion_window": body["completion_window"],
            "status": "validating",
            "metadata_json": orjson.dumps(metadata).decode() if metadata else None,
            "total": 0,
            "created_at": now,
            "expires_at": now + timedelta(seconds=settings.batch.window_seconds),
        }
    )


def view(batch: BatchJob) -> dict[str, Any]:
    """The batch object, its counts read now."""
    return batch_object(batch, store.line_states(batch.id))


def find(account_id: int | None, batch_id: str) -> BatchJob:
    """The batch, or 404 (another account's batch is not found either)."""
    batch = store.get_batch(account_id, batch_id)
    if batch is None:
        raise NotFound(f"No batch found with id '{batch_id}'.")
    return batch


def cancel(account_id: int | None, batch_id: str) -> BatchJob:
    """Stop new lines at once; in-flight ones finish, then the batch is ``cancelled``."""
    batch = store.cancel_batch(account_id, batch_id)
    if batch is None:
        raise NotFound(f"No batch found with id '{batch_id}'.")
    return batch
