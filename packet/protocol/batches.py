"""The Batch API on the wire: the create body, the batch object, the input and output lines."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import orjson
from marshmallow import Schema, fields, validate

from .files import epoch

if TYPE_CHECKING:
    from ..models import BatchJob

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
MAX_LINES = 50_000
FINAL = ("completed", "failed", "expired", "cancelled")


def new_id() -> str:
    return "batch_" + secrets.token_hex(12)


class CreateSchema(Schema):
    input_file_id = fields.String(required=True)
    endpoint = fields.String(
        required=True,
        validate=validate.OneOf(ENDPOINTS, error="Must be one of: " + ", ".join(ENDPOINTS)),
    )
    completion_window = fields.String(
        required=True, validate=validate.OneOf(("24h",), error="Must be '24h'.")
    )
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(max=64)),
        values=fields.String(validate=validate.Length(max=512)),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=16),
    )


class ListQuery(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    after = fields.String(load_default=None)


CREATE = CreateSchema()
LIST_QUERY = ListQuery()


def batch_object(row: BatchJob, states: dict[str, int]) -> dict[str, Any]:
    """OpenAI's batch object; ``states``: how many of its lines are in each state."""
    completed = states.get("done", 0)
    failed = states.get("error", 0) + states.get("expired", 0)
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "errors": orjson.loads(row.errors_json) if row.errors_json else None,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": epoch(row.created_at),
        "in_progress_at": epoch(row.in_progress_at),
        "expires_at": epoch(row.expires_at),
        "finalizing_at": epoch(row.finalizing_at),
        "completed_at": epoch(row.completed_at),
        "failed_at": epoch(row.failed_at),
        "expired_at": epoch(row.expired_at),
        "cancelling_at": epoch(row.cancelling_at),
        "cancelled_at": epoch(row.cancelled_at),
        "request_counts": {"total": row.total, "completed": completed, "failed": failed},
        "metadata": orjson.loads(row.metadata_json) if row.metadata_json else None,
    }


def input_error(line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    """One entry of ``errors.data`` for a refused input file."""
    return {"code": "invalid_request", "line": line, "message": message, "param": param}


def output_line(custom_id: str, status: int, request_id: str, body: Any) -> dict[str, Any]:
    """A line of the output (2xx) or error file (an error answer) for an answered request."""
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }


def failed_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    """A line of the error file for a request that got no answer."""
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
