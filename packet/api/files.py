"""The Files API: upload (multipart, spooled as it arrives), list, retrieve, content, delete.
A file belongs to one account: another account's id is a 404."""

from __future__ import annotations

from flask import Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from .. import store
from ..batch.storage import storage_for
from ..body import receiving
from ..errors import InvalidRequest, NotFound, from_validation
from ..exchange import current
from ..limits import counted
from ..models import StoredFile, utcnow
from ..protocol import files as wire
from ..runtime import runtime
from ..upload import MAX_FIELD_BYTES, receive
from . import bp

UPLOAD_SECONDS = 3600.0  # the most a whole upload may take (each read: the body's read timeout)
UPLOAD_READ = 16 * 1024  # with what the form decoder keeps of a read, under its MAX_FIELD_BYTES


def _account() -> int:
    principal = current().principal
    assert principal is not None  # the v1 blueprint authenticates first
    return principal.account_id


def _find(file_id: str) -> StoredFile:
    found = store.get_file(_account(), file_id)
    if found is None:
        raise NotFound(f"No such File object: {file_id}")
    return found


@bp.post("/files")
@counted
def create_file() -> ResponseReturnValue:
    """Upload a file (``purpose`` batch or user_data), streamed to storage."""
    settings = runtime().settings
    request.max_content_length = settings.files_max_bytes + MAX_FIELD_BYTES + 16 * 1024
    stream, idle = request.stream, settings.request_read_timeout

    def read(size: int) -> bytes:
        with receiving(idle):
            return stream.read(size)

    with receiving(max(idle, UPLOAD_SECONDS)):
        upload = receive(read, request.content_type or "", settings.files_max_bytes, UPLOAD_READ)
    try:
        purpose = upload.fields.get("purpose")
        if purpose not in wire.PURPOSES:
            raise InvalidRequest(
                f"'purpose' must be one of: {', '.join(wire.PURPOSES)}.", param="purpose"
            )
        storage = storage_for(settings)
        file_id = wire.new_id()
        row = {
            "id": file_id,
            "account_id": _account(),
            "filename": upload.filename[:255],
            "purpose": purpose,
            "bytes": upload.size,
            "storage": storage.kind,
            "created_at": utcnow(),
        }
        store.create_file(row, storage.stage(file_id, upload.spool))
    finally:
        upload.close()
    return jsonify(wire.file_object(_find(file_id)))


@bp.get("/files")
@counted
def list_files() -> ResponseReturnValue:
    """The account's files, newest first (``limit``, ``after``, ``order``, ``purpose``)."""
    try:
        query = wire.LIST_QUERY.load(request.args.to_dict())
    except ValidationError as exc:
        raise from_validation(exc.messages) from None
    rows = store.list_files(
        _account(),
        purpose=query["purpose"],
        after=query["after"],
        ascending=query["order"] == "asc",
        limit=query["limit"] + 1,
    )
    data = [wire.file_object(row) for row in rows[: query["limit"]]]
    return jsonify(wire.page(data, len(rows) > query["limit"]))


@bp.get("/files/<file_id>")
@counted
def retrieve_file(file_id: str) -> ResponseReturnValue:
    """One file object."""
    return jsonify(wire.file_object(_find(file_id)))


@bp.get("/files/<file_id>/content")
@counted
def file_content(file_id: str) -> ResponseReturnValue:
    """The file's bytes, streamed from storage."""
    found = _find(file_id)
    chunks = storage_for(runtime().settings, found.storage).open(found.id)
    return Response(
        stream_with_context(chunks),
        mimetype="application/octet-stream",
        headers={"Content-Length": str(found.bytes)},
    )


@bp.delete("/files/<file_id>")
@counted
def delete_file(file_id: str) -> ResponseReturnValue:
    """Delete the file and its bytes."""
    kind = _find(file_id).storage
    if not store.delete_file(_account(), file_id):
        raise NotFound(f"No such File object: {file_id}")
    storage_for(runtime().settings, kind).remove(file_id)
    return jsonify({"id": file_id, "object": "file", "deleted": True})
