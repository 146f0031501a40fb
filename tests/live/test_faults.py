"""Faults injected into real processes under load: Redis and PostgreSQL stopped and started
again (private servers on free ports, never the shared ones), a worker killed with ``kill -9``
mid-stream, and SIGTERM with streams in flight.

Each test compares the usage rows with what the simulated vLLM really sent, request by request,
and checks the balance equation once every lease is back: initial = final + Σ cost. Figures are
printed (``pytest -s``) for the closing notes.
"""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest
import requests
from helpers import BULK, PRICES, Load, metered_against_sent, wait_rows

from packet import store

pytestmark = pytest.mark.live

BALANCE = 50_000_000
PROBE_TIER = orjson.dumps({"probe": {"rpm": 5, "tpm": 1_000_000}}).decode()


def report(fault: str, load: Load, figures: dict, **extra: object) -> None:
    print(
        f"\n[{fault}] requests {len(load.results)}, statuses {dict(load.statuses())}, "
        f"tokens metered/sent {figures['metered']}/{figures['sent']}, rows {figures['rows']} "
        f"(recovered {figures['recovered']}), " + ", ".join(f"{k} {v}" for k, v in extra.items())
    )


def balance_equation(database, name: str, cost: int) -> None:
    """Once the gateway has stopped (every lease returned): initial = final + Σ cost."""
    final = database.run(store.get_account, name).balance_micros
    assert final == BALANCE - cost, f"balance {final} != {BALANCE} - {cost}"


def no_server_errors(load: Load, allowed: frozenset[int] = frozenset()) -> None:
    errors = {
        s: n for s, n in load.statuses().items() if s is None or (s >= 500 and s not in allowed)
    }
    assert not errors, errors


def test_redis_stopped_and_started_under_load(launcher, sqlite_database, private_redis):
    """Limits fail open while Redis is down (no request fails), every worker counts again
    within a second or two of it coming back, and metering never depends on Redis."""
    private_redis.start()
    sim = launcher.sim()
    gateway = launcher.gateway(
        sqlite_database,
        [sim.url],
        workers=2,
        REDIS_URL=private_redis.url,
        PACKET_LIMIT_WINDOW_SECONDS="3600",
        PACKET_TIERS=orjson.dumps(
            orjson.loads(BULK["PACKET_TIERS"]) | orjson.loads(PROBE_TIER)
        ).decode(),
        **PRICES,
    )
    name, key = sqlite_database.account(tier="bulk", balance_micros=BALANCE)
    _, first = sqlite_database.account(tier="probe")
    _, later = sqlite_database.account(tier="probe")
    load = Load(gateway, key, threads=6, count=4000, seconds=40).start()
    time.sleep(1.0)
    private_redis.kill()
    time.sleep(2.0)
    private_redis.start()
    back = time.monotonic()

    def probe(key: str) -> requests.Response:
        body = {"messages": [{"role": "user", "content": "probe"}], "max_tokens": 1}
        headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
        url = f"{gateway.url}/v1/chat/completions"
        return requests.post(url, json=body, headers=headers, timeout=10)

    # The first worker counts again when a probe's remaining count goes down ...
    while probe(first).headers.get("X-RateLimit-Remaining") != "4":
        assert time.monotonic() - back < 5, "limits did not apply again within 5 s"
    recovery = time.monotonic() - back
    # ... and 2 s after Redis is back every worker does: exactly 5 of 7 admitted, whichever
    # worker serves them (a worker still failing open would admit more).
    time.sleep(max(0.0, back + 2.0 - time.monotonic()))
    statuses = [probe(later).status_code for _ in range(7)]
    time.sleep(1.0)
    load.stop()
    assert statuses == [200] * 5 + [429] * 2, "a worker still admitted without limits"
    no_server_errors(load)
    gateway.stop(signal.SIGINT)
    figures = metered_against_sent(sqlite_database, name, sim, load.results)
    assert figures["metered"] == figures["sent"]
    balance_equation(sqlite_database, name, figures["cost"])
    report("redis stop/start", load, figures, recovery_s=round(recovery, 2))


def test_postgres_stopped_and_started_under_load(launcher, private_postgres):
    """While PostgreSQL is down, cached keys keep being served from the worker's lease and
    everything else is a 503 with Retry-After; usage waits in the buffer and is written once
    the database is back, so every token the upstream sent is metered."""
    database = private_postgres.database()
    sim = launcher.sim()
    gateway = launcher.gateway(database, [sim.url], workers=2, **PRICES, **BULK)
    name, key = database.account(tier="bulk", balance_micros=BALANCE)
    load = Load(gateway, key, threads=6, count=6000, seconds=60).start()
    time.sleep(1.5)
    private_postgres.stop()
    down = time.monotonic()
    time.sleep(3.0)
    private_postgres.start()
    outage = time.monotonic() - down
    time.sleep(2.0)
    results = load.stop()
    unavailable = [r for r in results if r["status"] == 503]
    assert all(r["retry_after"] for r in unavailable), "a 503 without Retry-After"
    no_server_errors(load, allowed=frozenset({503}))
    after = [r["status"] for r in results if r["sent"] > time.monotonic() - load.started - 0.5]
    assert after and set(after) == {200}, "still failing after the database came back"
    gateway.stop(signal.SIGINT)
    database.run(lambda: __import__("packet.extensions").extensions.db.engine.dispose())
    figures = metered_against_sent(database, name, sim, results)
    assert figures["metered"] == figures["sent"]
    balance_equation(database, name, figures["cost"])
    report("postgres stop/start", load, figures, outage_s=round(outage, 1))


def slow_stream(i: int) -> tuple[str, dict]:
    """A stream of 150 tokens at 20 ms each (3 s), with or without usage in the stream."""
    body = {
        "messages": [{"role": "user", "content": f"slow stream {i}"}],
        "max_tokens": 150,
        "stream": True,
        "x_sim_token_delay": 0.02,
    }
    if i % 2:
        body["stream_options"] = {"include_usage": True}
    return "/v1/chat/completions", body


def test_sigterm_with_streams_in_flight(launcher, database):
    """A graceful stop lets the streams in flight finish, then flushes: every token is metered."""
    sim = launcher.sim()
    gateway = launcher.gateway(
        database,
        [sim.url],
        workers=2,
        PACKET_USAGE_FLUSH_INTERVAL="3600",
        GUNICORN_GRACEFUL_TIMEOUT="20",
        **PRICES,
        **BULK,
    )
    name, key = database.account(tier="bulk", balance_micros=BALANCE)
    load = Load(gateway, key, slow_stream, threads=16, count=16, seconds=30).start()
    deadline = time.monotonic() + 10
    while sum(not r["finished"] for r in sim.requests()) < 16:
        assert time.monotonic() < deadline, "the streams never all started"
        time.sleep(0.05)
    gateway.stop(signal.SIGTERM)
    load.stop()
    assert load.statuses() == {200: 16}
    assert all(r["events"][-1] == b"[DONE]" for r in load.results)
    figures = metered_against_sent(database, name, sim, load.results)
    assert figures["metered"] == figures["sent"] == 16 * 150
    balance_equation(database, name, figures["cost"])
    report("SIGTERM with 16 streams in flight", load, figures)


def test_kill_9_of_a_worker_mid_stream(launcher, database):
    """A worker killed outright: its streams break, and a live worker recovers its journal —
    a row for each of its streams (billed up to the last checkpoint, never more than was
    sent), the rest of its leases back on the balance. No money is created."""
    sim = launcher.sim()
    gateway = launcher.gateway(database, [sim.url], workers=2, **PRICES, **BULK)
    name, key = database.account(tier="bulk", balance_micros=BALANCE)
    load = Load(gateway, key, slow_stream, threads=16, count=16, seconds=30).start()
    deadline = time.monotonic() + 10
    while sum(not r["finished"] for r in sim.requests()) < 16:
        assert time.monotonic() < deadline, "the streams never all started"
        time.sleep(0.05)
    time.sleep(1.5)  # open for more than a second: checkpointed with the next flush
    victim = max(gateway.workers(2), key=lambda pid: gateway.connections_to(pid, sim.port))
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    load.stop()
    broken = [r for r in load.results if r["status"] is None or r["events"][-1:] != [b"[DONE]"]]
    assert broken, "no stream was on the killed worker"
    rows = wait_rows(database, name, 16, timeout=30)
    recovery = time.monotonic() - killed
    assert len(rows) == 16, f"{len(rows)} rows for 16 streams"
    gateway.stop(signal.SIGINT)
    figures = metered_against_sent(database, name, sim, load.results)
    assert figures["recovered"] == len(broken)
    assert figures["metered"] <= figures["sent"]
    balance_equation(database, name, figures["cost"])
    report(
        "kill -9 of a worker mid-stream",
        load,
        figures,
        broken_streams=len(broken),
        recovery_s=round(recovery, 1),
    )
