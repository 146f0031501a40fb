"""Batch workers sharing work and taking it over: a worker SIGKILLed mid-batch and another
finishing it, and two workers on one batch on PostgreSQL, checked at the simulated upstream."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from helpers import PRICES, batch_rows, chat_lines, jsonl, submit, wait_status
from processes import Database, migrated_app
from sqlalchemy import func, select

from packet import store
from packet.extensions import db
from packet.models import BatchLine


def lines_in(database: Database, batch_id: str, state: str) -> set[int]:
    def query() -> set[int]:
        rows = db.session.execute(
            select(BatchLine.line).where(BatchLine.batch_id == batch_id, BatchLine.state == state)
        ).scalars()
        return set(rows)

    return database.run(query)


def sends(sim, batch_id: str) -> Counter:
    """How often the upstream was sent each line of the batch (request id ``<batch>-<line>``)."""
    prefix = f"{batch_id}-"
    return Counter(
        int(r["request_id"][len(prefix) :])
        for r in sim.requests()
        if (r["request_id"] or "").startswith(prefix)
    )


def test_a_killed_worker_s_lines_are_finished_by_another(launcher, tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    database = Database("sqlite", url, migrated_app(url))
    slow = launcher.sim("--token-delay", "0.05")
    gateway = launcher.gateway(database, upstreams=[slow.url], **PRICES)
    env = {"PACKET_BATCH_LEASE_SECONDS": "2", "PACKET_BATCH_CONCURRENCY": "4", **PRICES}
    env["PACKET_BATCH_PRIORITY"] = "5"  # vLLM's --scheduling-policy priority: served after 0
    first = launcher.worker(database, upstreams=[slow.url], **env)
    name, key = database.account()
    before = database.run(store.get_account, name).balance_micros
    client = gateway.client(key, max_retries=2)
    batch = submit(client, chat_lines(24, max_tokens=20))
    deadline = time.monotonic() + 30
    while len(lines_in(database, batch.id, "done")) < 6:
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.05)
    first.stop(signal.SIGKILL)
    in_flight = lines_in(database, batch.id, "running")
    assert in_flight, "the worker was killed with lines in flight"
    second = launcher.worker(database, upstreams=[slow.url], **env)
    done = wait_status(client, batch.id, {"completed"}, timeout=60)
    assert second.stop(signal.SIGTERM) == 0 and "stopped" in second.log.read_text()
    output = jsonl(client, done.output_file_id)
    assert Counter(o["custom_id"] for o in output) == Counter(f"req-{i}" for i in range(24))
    rows = batch_rows(database, name, batch.id)
    assert len(rows) == 24 and len({r.request_id for r in rows}) == 24  # none billed twice
    after = database.run(store.get_account, name).balance_micros
    assert before - after == sum(r.cost_micros for r in rows)
    sent = sends(slow, batch.id)
    assert set(sent) == set(range(1, 25))
    again = {line for line, times in sent.items() if times > 1}
    assert again <= in_flight and max(sent.values()) <= 2  # only the killed lines, once more
    bodies = [r["body"] for r in slow.requests() if (r["request_id"] or "").startswith(batch.id)]
    assert {body["priority"] for body in bodies} == {5}


@pytest.mark.timeout(120)
def test_two_workers_share_a_batch_on_postgres(launcher, postgres_database):
    database = postgres_database
    sim = launcher.sim()
    gateway = launcher.gateway(database, upstreams=[sim.url], **PRICES)
    for _ in range(2):
        launcher.worker(database, upstreams=[sim.url], PACKET_BATCH_CONCURRENCY="16", **PRICES)
    name, key = database.account()
    client = gateway.client(key, max_retries=2)
    batch = submit(client, chat_lines(1000))
    done = wait_status(client, batch.id, {"completed"}, timeout=100)
    assert done.request_counts.completed == 1000, (
        database.run(store.line_states, batch.id),
        [w.output()[-2000:] for w in launcher.workers],
    )
    sent = sends(sim, batch.id)
    assert len(sent) == 1000 and set(sent.values()) == {1}  # no line sent twice
    assert len(batch_rows(database, name, batch.id)) == 1000

    def owners() -> int:
        return db.session.execute(
            select(func.count(func.distinct(BatchLine.owner))).where(BatchLine.batch_id == batch.id)
        ).scalar_one()

    assert database.run(owners) == 2  # both workers took part
