"""The Files and Batch APIs through Flask's test client, and a worker's rounds that need no
upstream: validation, cancel, expiry and the files assembled at the end; the CLI and admin API."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from packet import store
from packet.batch.worker import Worker
from packet.extensions import db
from packet.models import BatchJob
from packet.runtime import runtime

ADMIN = "adm_" + "x" * 32
CHAT = "/v1/chat/completions"


@pytest.fixture
def app(make_app):
    return make_app(PACKET_FILES_MAX_BYTES=str(3 << 20), PACKET_ADMIN_TOKEN=ADMIN)


def account(app, name: str) -> dict[str, str]:
    with app.app_context():
        store.create_account(name, "standard", 25_000_000)
        _, key = store.create_key(name, "test")
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def auth(app) -> dict[str, str]:
    return account(app, "acme")


def upload(client, auth, data: bytes, purpose: str = "batch"):
    form = {"purpose": purpose, "file": (io.BytesIO(data), "in.jsonl")}
    return client.post("/v1/files", data=form, headers=auth, content_type="multipart/form-data")


def lines(count: int) -> bytes:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    rows = [
        {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body} for i in range(count)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


def step(app) -> None:
    with app.app_context():
        Worker(app, runtime()).step()


def validate(app) -> None:
    """Validate every waiting batch (a whole step would also start their lines)."""
    with app.app_context():
        worker = Worker(app, runtime())
        while (batch_id := store.claim_validation(worker.owner, 60)) is not None:
            worker.validate(batch_id)


def test_files_upload_list_content_delete(client, auth):
    big = bytes(range(256)) * (10 << 10)  # 2.5 MiB: three chunks
    first = upload(client, auth, big, "user_data")
    assert first.status_code == 200, first.json
    made = first.json
    assert made["object"] == "file" and made["bytes"] == len(big) and made["status"] == "processed"
    assert made["id"].startswith("file-") and made["filename"] == "in.jsonl"
    second = upload(client, auth, b"{}").json
    content = client.get(f"/v1/files/{made['id']}/content", headers=auth)
    assert content.data == big and content.headers["Content-Length"] == str(len(big))
    listed = client.get("/v1/files?limit=1", headers=auth).json
    assert [f["id"] for f in listed["data"]] == [second["id"]] and listed["has_more"]
    rest = client.get(f"/v1/files?limit=1&after={second['id']}", headers=auth).json
    assert [f["id"] for f in rest["data"]] == [made["id"]] and not rest["has_more"]
    ascending = client.get("/v1/files?order=asc&purpose=batch", headers=auth).json
    assert [f["id"] for f in ascending["data"]] == [second["id"]]
    assert "x-ratelimit-remaining-requests" in content.headers  # counted like any /v1 route
    jsonl = lines(3000)  # its line breaks keep part of each read in the form decoder
    assert upload(client, auth, jsonl).json["bytes"] == len(jsonl) > 256 << 10
    gone = client.delete(f"/v1/files/{made['id']}", headers=auth).json
    assert gone == {"id": made["id"], "object": "file", "deleted": True}
    assert client.get(f"/v1/files/{made['id']}", headers=auth).status_code == 404


def test_files_refused(client, auth):
    bad = upload(client, auth, b"x", "fine-tune")
    assert bad.status_code == 400 and bad.json["error"]["param"] == "purpose"
    assert upload(client, auth, b"x" * ((3 << 20) + 1)).status_code == 413
    assert client.get("/v1/files?limit=0", headers=auth).json["error"]["param"] == "limit"
    assert client.get("/v1/files").status_code == 401


def test_batch_create_is_checked(client, auth, app):
    text = upload(client, auth, lines(1), "user_data").json["id"]
    cases = [
        (
            {"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h"},
            "input_file_id",
        ),
        ({"input_file_id": text, "endpoint": CHAT, "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": text, "endpoint": "/v1/audio", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": text, "endpoint": CHAT, "completion_window": "1h"}, "completion_window"),
    ]
    for body, param in cases:
        answer = client.post("/v1/batches", json=body, headers=auth)
        assert answer.status_code == 400 and answer.json["error"]["param"] == param, body
    other = account(app, "other")
    mine = upload(client, auth, lines(1)).json["id"]
    body = {"input_file_id": mine, "endpoint": CHAT, "completion_window": "24h"}
    assert client.post("/v1/batches", json=body, headers=other).status_code == 400


def create(client, auth, data: bytes, **extra) -> dict:
    file_id = upload(client, auth, data).json["id"]
    body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", **extra}
    answer = client.post("/v1/batches", json=body, headers=auth)
    assert answer.status_code == 200, answer.json
    return answer.json


def test_validated_then_cancelled_with_an_error_file(client, auth, app):
    batch = create(client, auth, lines(5), metadata={"job": "nightly"})
    assert batch["status"] == "validating" and batch["metadata"] == {"job": "nightly"}
    assert batch["expires_at"] - batch["created_at"] == 24 * 3600
    validate(app)
    seen = client.get(f"/v1/batches/{batch['id']}", headers=auth).json
    assert seen["status"] == "in_progress" and seen["request_counts"]["total"] == 5
    cancelling = client.post(f"/v1/batches/{batch['id']}/cancel", headers=auth).json
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"]
    step(app)
    done = client.get(f"/v1/batches/{batch['id']}", headers=auth).json
    assert done["status"] == "cancelled" and done["output_file_id"] is None
    errors = client.get(f"/v1/files/{done['error_file_id']}/content", headers=auth).data
    codes = [json.loads(line)["error"]["code"] for line in errors.splitlines()]
    assert codes == ["batch_cancelled"] * 5
    listed = client.get("/v1/batches?limit=1", headers=auth).json
    assert listed["data"][0]["id"] == batch["id"] and listed["object"] == "list"


def test_a_bad_file_fails_and_a_late_batch_expires(client, auth, app):
    failed = create(client, auth, b'{"custom_id": 1}\n' + lines(1))
    late = create(client, auth, lines(3))
    validate(app)
    with app.app_context():
        db.session.execute(
            update(BatchJob)
            .where(BatchJob.id == late["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()
    step(app)
    seen = client.get(f"/v1/batches/{failed['id']}", headers=auth).json
    assert seen["status"] == "failed" and seen["errors"]["data"][0]["line"] == 1
    expired = client.get(f"/v1/batches/{late['id']}", headers=auth).json
    assert expired["status"] == "expired" and expired["expired_at"]
    assert expired["request_counts"] == {"total": 3, "completed": 0, "failed": 3}


def test_cli_and_admin_api(client, auth, app):
    batch = create(client, auth, lines(2))
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["batches", "list", "acme"])
    assert batch["id"] in listed.output and "validating" in listed.output
    shown = runner.invoke(args=["batches", "show", batch["id"]])
    assert json.loads(shown.output)["id"] == batch["id"]
    assert runner.invoke(args=["batches", "show", "batch_nope"]).exit_code == 1
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert client.get(f"/admin/v1/batches/{batch['id']}", headers=admin).json["id"] == batch["id"]
    page = client.get("/admin/v1/accounts/acme/batches", headers=admin).json
    assert [b["id"] for b in page["data"]] == [batch["id"]]
    cancelled = runner.invoke(args=["batches", "cancel", batch["id"]])
    assert "cancelling" in cancelled.output
    again = client.post(f"/admin/v1/batches/{batch['id']}/cancel", headers=admin).json
    assert again["status"] == "cancelling"
    assert client.get("/admin/v1/batches/batch_nope", headers=admin).status_code == 404
