"""The Files API on the wire: the file object, the list page, and the list's query."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

if TYPE_CHECKING:
    from ..models import StoredFile

PURPOSES = ("batch", "user_data")
OUTPUT_PURPOSE = "batch_output"


def new_id() -> str:
    return "file-" + secrets.token_hex(12)


def epoch(moment: datetime | None) -> int | None:
    """Unix seconds (SQLite gives back naive times, which are UTC here)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def file_object(row: StoredFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": epoch(row.created_at),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


class FileListQuery(Schema):
    limit = fields.Integer(load_default=10_000, validate=validate.Range(1, 10_000))
    after = fields.String(load_default=None)
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
    purpose = fields.String(load_default=None)


LIST_QUERY = FileListQuery()
