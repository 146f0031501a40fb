"""The Files and Batch APIs with the official SDK: gunicorn, a real batch worker process and
the simulated vLLM, on one database."""

from __future__ import annotations

import json
import time

import openai
import pytest
from helpers import PRICES, batch_rows, chat_lines, discounted, jsonl, submit, wait_status
from processes import Database, Gateway, Launcher, Sim, free_port

from packet import store


@pytest.fixture(scope="module")
def fast(module_launcher: Launcher) -> Sim:
    return module_launcher.sim()


@pytest.fixture(scope="module")
def slow(module_launcher: Launcher) -> Sim:
    """0.05 s a token: a line of 20 tokens takes a second."""
    return module_launcher.sim("--token-delay", "0.05")


@pytest.fixture(scope="module")
def gateway(module_launcher: Launcher, live_database: Database, fast: Sim) -> Gateway:
    return module_launcher.gateway(live_database, upstreams=[fast.url], **PRICES)


@pytest.fixture(scope="module")
def worker(module_launcher: Launcher, live_database: Database, fast: Sim):
    return module_launcher.worker(
        live_database, upstreams=[fast.url], PACKET_WARMUP_TIMEOUT="1", **PRICES
    )


def test_chat_batch_completes_billed_at_a_discount(live_database, gateway, worker, fast):
    name, key = live_database.account()
    client = gateway.client(key, max_retries=2)
    before = live_database.run(store.get_account, name).balance_micros
    batch = submit(client, chat_lines(100))
    assert batch.status == "validating" and batch.endpoint == "/v1/chat/completions"
    done = wait_status(client, batch.id, {"completed", "failed"})
    assert done.status == "completed", done
    assert done.request_counts.total == 100 and done.request_counts.completed == 100
    assert done.error_file_id is None and done.completed_at and done.in_progress_at
    output = jsonl(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in output) == sorted(f"req-{i}" for i in range(100))
    sent = {r["request_id"]: r for r in fast.requests() if r["request_id"]}
    rows = batch_rows(live_database, name, batch.id)
    assert len(rows) == 100 and {r.route for r in rows} == {"batch"}
    for line in output:
        response = line["response"]
        assert response["status_code"] == 200 and line["error"] is None
        i = int(line["custom_id"].split("-")[1])
        assert response["body"]["choices"][0]["message"]["content"]
        truth = sent[response["request_id"]]
        assert truth["body"]["messages"][0]["content"] == f"say {i}"
        assert response["body"]["usage"]["prompt_tokens"] == truth["prompt_tokens"]
    for row in rows:
        truth = sent[row.request_id]
        assert (row.prompt_tokens, row.completion_tokens) == (
            truth["prompt_tokens"],
            truth["completion_tokens"],
        )
        assert row.cost_micros == discounted(row.prompt_tokens, row.completion_tokens) > 0
    after = live_database.run(store.get_account, name).balance_micros
    assert before - after == sum(r.cost_micros for r in rows)
    listed = client.batches.list(limit=5)
    assert listed.data[0].id == batch.id


def test_embeddings_batch(live_database, gateway, worker, fast):
    name, key = live_database.account()
    client = gateway.client(key, max_retries=2)
    lines = [
        {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings"}
        | {"body": {"model": "auto", "input": f"text number {i}"}}
        for i in range(10)
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    done = wait_status(client, submit(client, data, "/v1/embeddings").id, {"completed", "failed"})
    assert done.status == "completed" and done.request_counts.completed == 10
    output = jsonl(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in output) == sorted(f"e{i}" for i in range(10))
    assert all(o["response"]["body"]["data"][0]["embedding"] for o in output)
    rows = batch_rows(live_database, name, done.id)
    sent = {r["request_id"]: r for r in fast.requests() if r["request_id"]}
    assert len(rows) == 10
    for row in rows:
        assert row.prompt_tokens == sent[row.request_id]["prompt_tokens"] > 0
        assert row.cost_micros == discounted(row.prompt_tokens, 0)


def test_bad_lines_fail_the_batch_with_line_numbers(live_database, gateway, worker):
    _, key = live_database.account()
    client = gateway.client(key, max_retries=2)
    good = chat_lines(1, "ok").decode().strip()
    bad = [
        good,
        "not json",
        good,  # the same custom_id again
        json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}),
        json.dumps(
            {"custom_id": "y", "method": "POST", "url": "/v1/chat/completions"}
            | {"body": {"messages": [{"role": "user", "content": "hi"}], "temperature": 7}}
        ),
    ]
    batch = submit(client, "\n".join(bad).encode())
    done = wait_status(client, batch.id, {"failed", "completed"})
    assert done.status == "failed" and done.failed_at
    errors = {e.line: e for e in done.errors.data}
    assert sorted(errors) == [2, 3, 4, 5]
    assert "custom_id" in errors[3].message and errors[4].param == "url"
    assert errors[5].param == "body.temperature"
    assert done.request_counts.total == 0


def test_another_account_sees_nothing(live_database, gateway, worker):
    _, key = live_database.account()
    _, other_key = live_database.account()
    mine, theirs = gateway.client(key, max_retries=2), gateway.client(other_key)
    done = wait_status(mine, submit(mine, chat_lines(2)).id, {"completed"})
    for call in (
        lambda: theirs.files.retrieve(done.input_file_id),
        lambda: theirs.files.content(done.output_file_id),
        lambda: theirs.files.delete(done.output_file_id),
        lambda: theirs.batches.retrieve(done.id),
        lambda: theirs.batches.cancel(done.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert theirs.files.list().data == [] and theirs.batches.list().data == []
    assert mine.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert mine.files.delete(done.input_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        mine.files.retrieve(done.input_file_id)


def test_cancel_mid_run(live_database, gateway, worker, slow, fast):
    name, key = live_database.account(endpoints=(slow.url,))
    client = gateway.client(key, max_retries=2)
    batch = submit(client, chat_lines(60, max_tokens=20))
    deadline = time.monotonic() + 30
    while client.batches.retrieve(batch.id).request_counts.completed < 8:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait_status(client, batch.id, {"cancelled"})
    output, errors = jsonl(client, done.output_file_id), jsonl(client, done.error_file_id)
    assert 8 <= len(output) < 60 and len(output) + len(errors) == 60
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    rows = batch_rows(live_database, name, batch.id)
    assert len(rows) == len(output)  # cancelled lines cost nothing
    answered = {o["response"]["request_id"] for o in output}
    assert {r.request_id for r in rows} == answered


def test_expiry(module_launcher, live_database, worker, slow, fast):
    short = module_launcher.gateway(
        live_database, upstreams=[fast.url], PACKET_BATCH_WINDOW_SECONDS="3", **PRICES
    )
    name, key = live_database.account(endpoints=(slow.url,))
    client = short.client(key, max_retries=2)
    batch = submit(client, chat_lines(60, max_tokens=20))
    assert batch.expires_at - batch.created_at == 3
    done = wait_status(client, batch.id, {"expired"}, timeout=30)
    assert done.expired_at
    output, errors = jsonl(client, done.output_file_id), jsonl(client, done.error_file_id)
    assert len(output) < 60 and len(output) + len(errors) == 60
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert len(batch_rows(live_database, name, batch.id)) == len(output)


def test_responses_lines_and_a_spent_balance(live_database, gateway, worker, fast):
    name, key = live_database.account()
    client = gateway.client(key, max_retries=2)
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses"}
        | {"body": {"model": "auto", "input": f"Say {i}", "max_output_tokens": 5}}
        for i in range(3)
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    done = wait_status(client, submit(client, data, "/v1/responses").id, {"completed"})
    output = jsonl(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in output) == ["r0", "r1", "r2"]
    assert all(o["response"]["body"]["object"] == "response" for o in output)
    rows = batch_rows(live_database, name, done.id)
    assert len(rows) == 3 and all(r.completion_tokens > 0 for r in rows)

    poor, poor_key = live_database.account(balance_micros=0)
    spent = gateway.client(poor_key, max_retries=2)
    done = wait_status(spent, submit(spent, chat_lines(2)).id, {"completed"})
    assert done.request_counts.failed == 2 and done.output_file_id is None
    errors = jsonl(spent, done.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"insufficient_quota"}
    assert batch_rows(live_database, poor, done.id) == []


def test_an_upstream_4xx_goes_to_the_error_file_and_the_batch_completes(
    live_database, gateway, worker
):
    _, key = live_database.account()
    client = gateway.client(key, max_retries=2)
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    lines = [
        {"custom_id": "fine", "method": "POST", "url": "/v1/chat/completions", "body": body},
        {"custom_id": "unknown-model", "method": "POST", "url": "/v1/chat/completions"}
        | {"body": body | {"model": "no-such-model"}},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    done = wait_status(client, submit(client, data).id, {"completed"})
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    [error] = jsonl(client, done.error_file_id)
    assert error["custom_id"] == "unknown-model" and error["error"] is None
    assert error["response"]["status_code"] == 404
    assert error["response"]["body"]["error"]["code"] == "model_not_found"
    assert [o["custom_id"] for o in jsonl(client, done.output_file_id)] == ["fine"]


def test_an_unreachable_endpoint_s_lines_fail_after_retries(live_database, gateway, worker):
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    name, key = live_database.account(endpoints=(gone,))
    client = gateway.client(key, max_retries=2)
    started = time.monotonic()
    done = wait_status(client, submit(client, chat_lines(2)).id, {"completed"}, timeout=60)
    assert time.monotonic() - started > 3  # 0.5 + 1 + 2 s of back-off between the tries
    errors = jsonl(client, done.error_file_id)
    assert {e["response"]["status_code"] for e in errors} == {503}
    assert {e["response"]["body"]["error"]["code"] for e in errors} == {"service_unavailable"}
    assert done.request_counts.failed == 2 and batch_rows(live_database, name, done.id) == []
