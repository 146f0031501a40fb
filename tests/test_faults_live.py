"""Faults injected into real processes under load: Redis and PostgreSQL stopped and started
again (private servers on free ports, never the shared ones), a worker killed with ``kill -9``
mid-stream, and SIGTERM with streams in flight.

Each test compares the usage rows with what the simulated vLLM really sent, request by request,
and checks the balance equation once every lease is back: initial = final + Σ cost. Figures are
printed (``pytest -s``) for the closing notes.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest
import requests
from helpers import BULK, PRICES, Load, metered_against_sent

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
    after = [r["status"] for r in results if r["sent"] > time.monotonic() - load._started - 0.5]
    assert after and set(after) == {200}, "still failing after the database came back"
    gateway.stop(signal.SIGINT)
    database.run(lambda: __import__("packet.extensions").extensions.db.engine.dispose())
    figures = metered_against_sent(database, name, sim, results)
    assert figures["metered"] == figures["sent"]
    balance_equation(database, name, figures["cost"])
    report("postgres stop/start", load, figures, outage_s=round(outage, 1))
