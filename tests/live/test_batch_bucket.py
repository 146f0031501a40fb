"""Files kept in an S3-compatible bucket (moto's server): uploads, a batch's input read by
the worker, its output written there, content streamed back, deletes; skipped without moto."""

from __future__ import annotations

import io

import pytest
from helpers import batch_rows, chat_lines, jsonl, submit, wait_status
from processes import S3Server

pytest.importorskip("moto.server", reason="moto[server] is not installed")
boto3 = pytest.importorskip("boto3")


def test_files_and_a_batch_in_a_bucket(launcher, sqlite_database, tmp_path):
    s3 = S3Server(tmp_path)
    try:
        bucket = boto3.client("s3", **_client_args(s3.env))
        bucket.create_bucket(Bucket="packet-files")
        settings = {"PACKET_FILES_URL": "s3://packet-files/tenant-a", **s3.env}
        sim = launcher.sim()
        gateway = launcher.gateway(sqlite_database, upstreams=[sim.url], **settings)
        launcher.worker(sqlite_database, upstreams=[sim.url], **settings)
        name, key = sqlite_database.account()
        client = gateway.client(key, max_retries=2)
        big = bytes(range(256)) * (12 << 10)  # 3 MiB
        kept = client.files.create(file=("blob.bin", io.BytesIO(big)), purpose="user_data")
        assert client.files.content(kept.id).content == big
        done = wait_status(client, submit(client, chat_lines(5)).id, {"completed"})
        assert sorted(o["custom_id"] for o in jsonl(client, done.output_file_id)) == sorted(
            f"req-{i}" for i in range(5)
        )
        assert len(batch_rows(sqlite_database, name, done.id)) == 5
        listed = bucket.list_objects_v2(Bucket="packet-files", Prefix="tenant-a/")
        keys = {item["Key"] for item in listed["Contents"]}
        for file_id in (kept.id, done.input_file_id, done.output_file_id):
            assert f"tenant-a/{file_id}" in keys
        assert client.files.delete(kept.id).deleted
        listed = bucket.list_objects_v2(Bucket="packet-files", Prefix="tenant-a/")
        assert f"tenant-a/{kept.id}" not in {item["Key"] for item in listed["Contents"]}
    finally:
        s3.stop()


def _client_args(env: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }
