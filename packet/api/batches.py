"""The Batch API: create, list, retrieve, cancel. The lines run in the worker processes."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, ValidationError

from .. import store
from ..batch import service
from ..body import read_body
from ..errors import InvalidRequest, from_validation
from ..exchange import current
from ..limits import counted
from ..protocol import batches as wire
from ..protocol.files import page
from ..runtime import runtime
from . import bp


def _principal_ids() -> tuple[int, int]:
    principal = current().principal
    assert principal is not None  # the v1 blueprint authenticates first
    return principal.account_id, principal.key_id


def _load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise from_validation(exc.messages) from None


@bp.post("/batches")
@counted
def create_batch() -> ResponseReturnValue:
    """Create a batch from an uploaded ``batch`` file."""
    settings = runtime().settings
    read_body(settings.request_read_timeout)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    account_id, key_id = _principal_ids()
    batch = service.create(settings, account_id, key_id, _load(wire.CREATE, data))
    return jsonify(service.view(batch))


@bp.get("/batches")
@counted
def list_batches() -> ResponseReturnValue:
    """The account's batches, newest first (``limit``, ``after``)."""
    query = _load(wire.LIST_QUERY, request.args.to_dict())
    rows = store.list_batches(_principal_ids()[0], query["after"], query["limit"] + 1)
    data = [service.view(row) for row in rows[: query["limit"]]]
    return jsonify(page(data, len(rows) > query["limit"]))


@bp.get("/batches/<batch_id>")
@counted
def retrieve_batch(batch_id: str) -> ResponseReturnValue:
    """One batch, with its request counts now."""
    return jsonify(service.view(service.find(_principal_ids()[0], batch_id)))


@bp.post("/batches/<batch_id>/cancel")
@counted
def cancel_batch(batch_id: str) -> ResponseReturnValue:
    """Stop the batch: no new line starts; in-flight ones finish, then ``cancelled``."""
    return jsonify(service.view(service.cancel(_principal_ids()[0], batch_id)))
