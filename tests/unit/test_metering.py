"""The meter without a server: prices and rounding, reservations, batched flushes that survive
a database failure without losing or double-applying anything, and the relay's token counts."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import gevent
import orjson
import pytest

from packet import store
from packet.auth import Principal
from packet.config import load_settings
from packet.errors import InsufficientQuota, ServiceUnavailable
from packet.extensions import db
from packet.journal import Journal, WorkerRow, process_alive
from packet.metering import NO_HOLD, Hold, Meter
from packet.money import Price, cost_micros
from packet.upstream.relay import relay_sse
from packet.upstream.sse import CHAT_FORMATS


def settings(**env: str):
    return load_settings({"DATABASE_URL": "sqlite://", **env}, instance_path="/tmp")


# --- prices -----------------------------------------------------------------------------------


def test_cost_is_tokens_times_price_per_million_rounded_up():
    s = settings(
        PACKET_PRICE_INPUT="0.5",
        PACKET_PRICE_OUTPUT="1.5",
        PACKET_PRICES='{"big": {"input": 3, "output": 15}, "free": {"input": 0, "output": 0}}',
    )
    assert s.price_for("other") == Price(500_000, 1_500_000)
    assert cost_micros(s, "other", 1_000_000, 1_000_000) == 2_000_000
    assert cost_micros(s, "big", 1000, 2000) == 3000 + 30_000
    assert cost_micros(s, "other", 1, 0) == 1  # 0.5 micro-dollars rounds up, never down to free
    assert cost_micros(s, "other", 3, 1) == 3  # 1.5 + 1.5 = 3.0 exactly
    assert cost_micros(s, "free", 10**6, 10**6) == 0
    assert cost_micros(s, "other", 0, 0) == 0


def test_default_price_is_zero():
    assert cost_micros(settings(), "any", 10**9, 10**9) == 0


# --- meter and store --------------------------------------------------------------------------


def _principal(database, balance: int) -> Principal:
    name, _ = database.account(balance_micros=balance)
    with database.app.app_context():
        account = store.get_account(name)
        key = store.list_keys(name)[0]
        return Principal(key.id, key.prefix, account.id, name, "standard", balance, None, ())


def _usage(principal: Principal, prompt: int, completion: int, cost: int) -> dict:
    return {
        "request_id": f"req_{uuid.uuid4().hex}",
        "account_id": principal.account_id,
        "key_id": principal.key_id,
        "endpoint_url": "http://u",
        "model": "m",
        "route": "chat.completions",
        "stream": False,
        "status": 200,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_micros": cost,
        "ttft_ms": 1,
        "latency_ms": 2,
        "client_disconnected": False,
    }


def _meter(database, touched=dict, interval: float = 60, **env: str) -> Meter:
    base = settings(PACKET_PRICE_INPUT="100", PACKET_PRICE_OUTPUT="300", **env)
    return Meter(database.app, replace(base, usage_flush_interval=interval), touched_keys=touched)


def _balance(database, principal: Principal) -> int:
    return database.run(store.get_account, principal.account_name).balance_micros


def _rows(database, principal: Principal) -> list:
    return database.run(store.usage_records, principal.account_name)


def test_reserve_then_settle_to_real_cost(database):
    principal = _principal(database, 1_000_000)
    meter = _meter(database, PACKET_BALANCE_LEASE="1")
    reserved = database.run(meter.reserve, principal, "m", 100, 1000)
    assert reserved == Hold(cost_micros(meter.settings, "m", 100, 1000)) == Hold(310_000)
    assert _balance(database, principal) == 690_000  # held at admission, atomically
    meter.record(_usage(principal, 20, 30, 11_000), reserved)
    assert _rows(database, principal) == []  # buffered, off the hot path
    assert meter.flush() == 1 and meter.pending() == 0
    assert _balance(database, principal) == 1_000_000 - 11_000


def test_spent_balance_is_refused_and_zero_price_reserves_nothing(database):
    principal = _principal(database, 0)
    with pytest.raises(InsufficientQuota):
        database.run(_meter(database).reserve, principal, "m", 10, 10)
    funded = _principal(database, 5)
    free = Meter(database.app, replace(settings(), usage_flush_interval=60), touched_keys=dict)
    assert database.run(free.reserve, funded, "m", 10**6, 10**6) == NO_HOLD
    assert _balance(database, funded) == 5


def test_reservation_needs_a_positive_balance_in_sql(database):
    principal = _principal(database, 1)
    meter = _meter(database)
    assert (
        database.run(meter.reserve, principal, "m", 10, 10).amount > 0
    )  # 1 micro left: admitted, goes negative
    with pytest.raises(InsufficientQuota):  # the cached balance says 1, the database says no
        database.run(meter.reserve, principal, "m", 10, 10)


def test_failed_flush_is_retried_without_loss_or_double_apply(database):
    principal = _principal(database, 1_000_000)
    drained = [{principal.key_id: 1_700_000_000.0}]  # the auth cache hands these over once
    meter = _meter(
        database, touched=lambda: drained.pop() if drained else {}, PACKET_BALANCE_LEASE="1"
    )
    reserved = database.run(meter.reserve, principal, "m", 10, 100)
    meter.record(_usage(principal, 10, 20, 7000), reserved)

    failures = []
    with database.app.app_context():
        dialect = db.engine.dialect
    real_commit = dialect.do_commit

    def database_down(dbapi_connection):
        failures.append(1)
        raise ConnectionError("server closed the connection unexpectedly")

    dialect.do_commit = database_down  # the insert and updates ran; the commit fails
    try:
        assert meter.flush() == 0
        assert meter.flush() == 0
    finally:
        dialect.do_commit = real_commit
    assert len(failures) == 2 and meter.pending() == 2  # the row and its account's lease
    assert _rows(database, principal) == []
    assert _balance(database, principal) == 1_000_000 - reserved.amount  # only the reservation

    assert meter.flush() == 1 and meter.pending() == 0
    assert meter.flush() == 0
    (row,) = _rows(database, principal)
    assert row.cost_micros == 7000
    assert _balance(database, principal) == 1_000_000 - 7000
    (key,) = database.run(store.list_keys, principal.account_name)
    assert key.last_used_at is not None  # kept across the failed flushes too


def test_a_row_the_database_refuses_is_quarantined_and_never_blocks_the_others(database, caplog):
    principal = _principal(database, 1_000_000)
    quarantined = []
    meter = _meter(database, PACKET_BALANCE_LEASE="1")
    meter.on_quarantine = lambda: quarantined.append(1)
    holds = [database.run(meter.reserve, principal, "m", 10, 100) for _ in range(3)]
    poisoned = _usage(principal, 10, 20, 7000) | {"model": {"not": "a string"}}
    meter.record(_usage(principal, 10, 20, 7000), holds[0])
    meter.record(poisoned, holds[1])
    meter.record(_usage(principal, 10, 20, 7000), holds[2])
    assert meter.flush() == 2
    assert meter.pending() == 0 and quarantined == [1]
    assert len(_rows(database, principal)) == 2
    # The money of all three is settled, the quarantined one's included.
    assert _balance(database, principal) == 1_000_000 - 3 * 7000
    assert "usage row quarantined" in caplog.text and poisoned["request_id"] in caplog.text
    assert meter.flush() == 0  # never retried


def test_rows_are_fitted_to_their_columns(database):
    principal = _principal(database, 1_000_000)
    meter = _meter(database)
    row = _usage(principal, 2**40, 10, 5) | {"model": "m" * 500, "request_id": "r" * 80}
    meter.record(row, NO_HOLD)
    assert meter.flush() == 1
    (stored,) = _rows(database, principal)
    assert len(stored.model) == 200 and len(stored.request_id) == 64
    assert stored.prompt_tokens == 2**31 - 1


def test_usage_rows_past_the_buffer_bound_are_refused_not_lost(database):
    principal = _principal(database, 1_000_000)
    meter = _meter(database, PACKET_USAGE_BUFFER_MAX="3")
    for _ in range(3):
        meter.record(_usage(principal, 1, 1, 0), NO_HOLD)
    with pytest.raises(ServiceUnavailable):
        database.run(meter.reserve, principal, "m", 1, 1)
    meter.flush()
    assert database.run(meter.reserve, principal, "m", 1, 1).amount > 0


def test_close_flushes_everything_buffered(database):
    principal = _principal(database, 1_000_000)
    meter = _meter(database, PACKET_USAGE_BATCH_SIZE="1000")
    meter.start()
    for _ in range(25):
        meter.record(
            _usage(principal, 1, 1, 400), database.run(meter.reserve, principal, "m", 1, 1)
        )
    assert meter.pending() >= 25
    meter.close()
    assert meter.pending() == 0 and len(_rows(database, principal)) == 25
    assert _balance(database, principal) == 1_000_000 - 25 * 400


def test_close_waits_for_calls_still_closing(database):
    """A quick stop: a response whose last byte went out is still closing (its row not queued
    yet) when the worker shuts down; close() waits for it, bounded, then writes its row."""
    principal = _principal(database, 1_000_000)
    meter = _meter(database)
    hold = database.run(meter.reserve, principal, "m", 1, 1)
    call = meter.begin(_call_fields(principal), hold)
    usage = _usage(principal, 1, 1, 400)
    gevent.spawn_later(0.2, meter.record, usage, hold, call)
    meter.close()
    assert [r.request_id for r in _rows(database, principal)] == [usage["request_id"]]
    assert _balance(database, principal) == 1_000_000 - 400


def test_close_lets_a_flush_under_way_finish(database, monkeypatch):
    """The background flush is mid-write when the worker shuts down: killed there, its batch
    would be gone (it is no longer queued), so close waits for it."""
    principal = _principal(database, 1_000_000)
    meter = _meter(database, interval=0.01, PACKET_USAGE_BATCH_SIZE="1000")
    writing, write = [], store.write_usage

    def slow_write(batch):
        if batch.records:
            writing.append(len(batch.records))
            gevent.sleep(0.2)
        return write(batch)

    monkeypatch.setattr(store, "write_usage", slow_write)
    meter.start()
    for _ in range(5):
        meter.record(
            _usage(principal, 1, 1, 400), database.run(meter.reserve, principal, "m", 1, 1)
        )
    while not writing:
        gevent.sleep(0.005)
    assert meter.pending() == 0  # the batch is out of the queue, in the flush's hands
    meter.close()
    assert len(_rows(database, principal)) == 5
    assert _balance(database, principal) == 1_000_000 - 5 * 400


def test_lease_serves_reservations_from_memory_and_returns_the_rest(database):
    principal = _principal(database, 10_000_000)
    meter = _meter(database)  # a block of 20 maximum costs
    first = database.run(meter.reserve, principal, "m", 1, 1)
    assert first == Hold(400)
    assert _balance(database, principal) == 10_000_000 - 20 * 400  # one UPDATE for the block
    holds = [database.run(meter.reserve, principal, "m", 1, 1) for _ in range(19)]
    assert all(h.amount == 400 for h in holds)
    assert _balance(database, principal) == 10_000_000 - 20 * 400  # no SQL for these
    for hold in [first, *holds]:
        meter.record(_usage(principal, 1, 0, 100), hold)
    assert meter.flush() == 20
    assert _balance(database, principal) == 10_000_000 - 20 * 100  # unused part came back
    assert meter.pending() == 0


def test_a_busy_worker_leases_bigger_blocks_until_the_next_flush(database):
    principal = _principal(database, 100_000_000)
    meter = _meter(database)  # blocks of 20, 40, 80 … maximum costs
    holds = [database.run(meter.reserve, principal, "m", 1, 1) for _ in range(61)]
    assert all(h.amount == 400 for h in holds)
    # 20 + 40 held by two leases, the 61st request took a third one of 80
    assert _balance(database, principal) == 100_000_000 - (20 + 40 + 80) * 400
    for hold in holds:
        meter.record(_usage(principal, 1, 0, 100), hold)
    meter.flush()
    assert _balance(database, principal) == 100_000_000 - 61 * 100
    database.run(meter.reserve, principal, "m", 1, 1)  # after a flush the block halves: 80
    assert _balance(database, principal) == 100_000_000 - 61 * 100 - 80 * 400


def test_a_grown_block_falls_back_to_the_base_block_near_the_floor(database):
    principal = _principal(database, 5 * 20 * 400)  # too little for a doubled block
    meter = _meter(database)
    holds = [database.run(meter.reserve, principal, "m", 1, 1) for _ in range(21)]
    assert all(h.amount == 400 for h in holds)
    assert _balance(database, principal) == 3 * 20 * 400  # two base blocks
    for _ in range(20):
        database.run(meter.reserve, principal, "m", 1, 1)
    assert _balance(database, principal) == 3 * 20 * 400 - 400  # below the floor: exact


def test_no_lease_near_an_empty_balance(database):
    principal = _principal(database, 4 * 20 * 400 - 1)  # below the floor of four blocks
    meter = _meter(database)
    hold = database.run(meter.reserve, principal, "m", 1, 1)
    assert hold == Hold(400)  # a lease of exactly this request's hold
    assert _balance(database, principal) == 4 * 20 * 400 - 1 - 400


def test_full_batch_is_written_at_once(database):
    principal = _principal(database, 1_000_000)
    meter = _meter(database, PACKET_USAGE_BATCH_SIZE="5")
    for _ in range(5):
        meter.record(_usage(principal, 1, 1, 400), NO_HOLD)
    assert meter.pending() == 0 and len(_rows(database, principal)) == 5


# --- relay ------------------------------------------------------------------------------------


class _Raw:
    """An upstream body delivered in pieces, optionally hanging after them."""

    def __init__(self, pieces: list[bytes], hang: bool = False) -> None:
        self.pieces, self.hang = list(pieces), hang

    def read1(self, _size: int) -> bytes:
        if self.pieces:
            return self.pieces.pop(0)
        if self.hang:
            gevent.sleep(60)
        return b""


def _relay(pieces: list[bytes], hang: bool = False):
    finished = []
    response = SimpleNamespace(raw=_Raw(pieces, hang), close=lambda: None)
    body = relay_sse(
        response,
        CHAT_FORMATS[False, False],
        keepalive=0,
        on_finish=finished.append,
    )
    return body, finished


def _chunk(text: str) -> bytes:
    return b'data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n' % text.encode()


def test_upstream_without_usage_is_metered_by_relayed_tokens():
    body, finished = _relay(
        [_chunk("a"), _chunk("b") + _chunk(""), _chunk("c"), b"data: [DONE]\n\n"]
    )
    assert list(body)[-1].endswith(b"data: [DONE]\n\n")
    body.close()
    (result,) = finished
    assert result.usage is None
    assert result.relayed_tokens == 3 and result.done and not result.disconnected


def test_client_disconnect_is_metered_once_with_tokens_so_far():
    usage = b'"usage": {"prompt_tokens": 7, "completion_tokens": %d}'
    pieces = [
        b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}], ' + usage % n + b"}\n\n"
        for n in (1, 2, 3)
    ]
    body, finished = _relay(pieces, hang=True)
    events = iter(body)
    for _ in range(3):
        next(events)
    body.close()
    (result,) = finished
    assert result.disconnected and result.usage == {"prompt_tokens": 7, "completion_tokens": 3}


# --- journal: a worker killed outright ---------------------------------------------------------

GONE_PID = 4_194_305  # above Linux's largest pid: no such process


def _dead_meter(database) -> Meter:
    """A meter whose journal claims a process of this machine that no longer runs."""
    meter = _meter(database)
    host = socket.gethostname()
    gone = WorkerRow(f"{host}/1/{GONE_PID}/{uuid.uuid4().hex[:8]}", host, 1, GONE_PID, time.time())
    meter.journal.worker = lambda: gone
    return meter


def _call_fields(principal: Principal) -> dict:
    usage = _usage(principal, 0, 0, 0)
    return {
        k: usage[k] for k in ("request_id", "account_id", "key_id", "endpoint_url", "model")
    } | {
        "route": "chat.completions",
        "stream": True,
    }


def _open_stream(database, meter: Meter, principal: Principal):
    """A stream admitted two seconds ago that has relayed 5 tokens of a 1-token prompt."""
    hold = database.run(meter.reserve, principal, "m", 1, 10)
    call = meter.begin(_call_fields(principal), hold)
    call.started -= 2
    call.progress = lambda: (1, 5)
    return hold, call


def test_a_dead_workers_journal_bills_its_streams_and_returns_its_leases(database):
    principal = _principal(database, 10_000_000)
    dead = _dead_meter(database)
    _, call = _open_stream(database, dead, principal)
    assert dead.flush() == 0  # no row yet: the checkpoint and the lease are in the journal
    lost = database.run(dead.reserve, principal, "m", 1, 1)
    dead.record(_usage(principal, 1, 0, 100), lost)  # finished after the last flush: lost
    # The stream's hold, and a new block for the request that finished since.
    assert _balance(database, principal) == 10_000_000 - 3100 - 20 * 400

    survivor = _meter(database)
    survivor.flush()  # its first flush sweeps for dead workers
    (row,) = _rows(database, principal)
    assert (row.status, row.prompt_tokens, row.completion_tokens) == (502, 1, 5)
    assert row.usage_source == "recovered" and row.cost_micros == 100 + 5 * 300
    assert row.request_id == call.fields["request_id"] and row.client_disconnected
    assert _balance(database, principal) == 10_000_000 - 1600  # the rest of the lease is back
    workers = database.run(store.journal_workers)
    assert dead.journal.identity().id not in [w.id for w in workers]
    survivor.flush()
    assert len(_rows(database, principal)) == 1  # recovered once


def test_a_worker_recovered_while_alive_bills_nothing_twice(database):
    principal = _principal(database, 10_000_000)
    stalled = _dead_meter(database)
    hold, call = _open_stream(database, stalled, principal)
    stalled.flush()
    _meter(database).flush()  # another worker takes it for dead and recovers it
    assert _balance(database, principal) == 10_000_000 - 1600

    stalled.record(_usage(principal, 1, 7, 2200), hold, call)  # the stream ends after all
    assert stalled.flush() == 0  # fenced: the recovery billed it from its checkpoint
    assert len(_rows(database, principal)) == 1
    assert _balance(database, principal) == 10_000_000 - 1600
    # The worker carries on with a new journal.
    again = database.run(stalled.reserve, principal, "m", 1, 1)
    stalled.record(_usage(principal, 1, 1, 400), again)
    assert stalled.flush() == 1
    assert _balance(database, principal) == 10_000_000 - 1600 - 400


def test_a_live_worker_is_never_recovered_and_a_clean_shutdown_leaves_no_journal(database):
    principal = _principal(database, 10_000_000)
    alive = _meter(database)
    hold, call = _open_stream(database, alive, principal)
    alive.flush()
    _meter(database).flush()
    assert _rows(database, principal) == []  # its process runs: left alone
    alive.record(_usage(principal, 1, 5, 1600), hold, call)
    alive.close()
    assert _balance(database, principal) == 10_000_000 - 1600
    workers = database.run(store.journal_workers)
    assert alive.journal.identity().id not in [w.id for w in workers]


def test_dead_workers_are_told_by_process_here_and_by_silence_elsewhere():
    journal = Journal(stale_after=600)
    me = journal.identity()
    zombie = subprocess.Popen(["true"])  # exited, not yet reaped by its parent (this process)
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    now = time.time()
    workers = [
        me,
        WorkerRow("a", me.host, os.getppid(), os.getpid(), now),  # alive (this process)
        WorkerRow("b", me.host, 1, GONE_PID, now),  # gone
        WorkerRow("c", me.host, os.getpid(), os.getpid(), now),  # pid reused by someone else
        WorkerRow("d", "elsewhere", 1, 1, now - 601),  # silent for too long
        WorkerRow("e", "elsewhere", 1, 1, now - 30),  # wrote recently
        WorkerRow("z", me.host, os.getpid(), zombie.pid, now),  # killed, not yet reaped
    ]
    assert journal.dead(workers, now) == ["b", "c", "d", "z"]
    zombie.wait()
    assert process_alive(os.getpid(), os.getppid())


def test_only_calls_open_for_a_while_are_checkpointed():
    journal = Journal(stale_after=600)
    young = journal.begin({"request_id": "young"}, 10)
    old = journal.begin({"request_id": "old"}, 20)
    old.started -= 2
    old.progress = lambda: (3, 4)
    stored, due = journal.checkpoint()
    assert due == [old] and young not in due
    (entry,) = orjson.loads(stored)
    assert entry["request_id"] == "old" and entry["hold"] == 20
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (3, 4)
    journal.written(due)
    journal.recovered_elsewhere()
    assert old.recovered and old.refunded and young.refunded and not young.recovered
