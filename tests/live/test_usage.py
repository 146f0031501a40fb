"""Metering against the truth, with the real gateway (gunicorn + gevent) and the simulated vLLM.

The simulator records, per X-Request-ID, the prompt and completion tokens it really sent and
whether the client went away; every usage row the gateway writes must match it exactly.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import (
    BULK,
    PRICES,
    call,
    charge,
    metered_against_sent,
    settled,
    settled_balance,
    until,
    wait_rows,
)
from processes import free_port

from packet import store

pytestmark = pytest.mark.live


def mixed_requests() -> list[tuple[str, dict, int | None]]:
    """30 requests: plain, completions, streams with and without usage, 5 dropped streams."""
    chat = "/v1/chat/completions"
    msgs = [{"role": "user", "content": "count the tokens of this request please"}]
    out: list[tuple[str, dict, int | None]] = []
    for i in range(9):
        out.append((chat, {"model": "auto", "messages": msgs, "max_tokens": 3 + i}, None))
    out.append((chat, {"messages": msgs}, None))  # no max_tokens: the upstream's default
    for i in range(5):
        body = {"model": "auto", "prompt": "once upon a time " * (i + 1), "max_tokens": 4 + i}
        out.append(("/v1/completions", body, None))
    for i in range(5):
        out.append((chat, {"messages": msgs, "stream": True, "max_tokens": 5 + i}, None))
    for i in range(5):
        options = {"include_usage": True, "continuous_usage_stats": i % 2 == 0}
        path = chat if i < 3 else "/v1/completions"
        body = {"stream": True, "max_tokens": 6 + i, "stream_options": options}
        body |= {"messages": msgs} if path == chat else {"prompt": "tell me more"}
        out.append((path, body, None))
    for i in range(5):
        body = {"messages": msgs, "stream": True, "max_tokens": 200, "x_sim_token_delay": 0.05}
        if i % 2:
            body["stream_options"] = {"include_usage": True}
        out.append((chat, body, 3))
    return out


def test_mixed_load_metered_exactly_as_upstream_sent(launcher, database):
    sim = launcher.sim()
    gateway = launcher.gateway(database, upstreams=[sim.url], **PRICES, **BULK)
    name, key = database.account(tier="bulk", balance_micros=50_000_000)
    plan = mixed_requests()
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(
            pool.map(lambda p: (call(gateway, key, p[0], p[1], drop_after=p[2]), p), plan)
        )
    assert [r["status"] for r, _ in results] == [200] * 30

    for result, (_, body, drop) in results:
        if not body.get("stream") or drop:
            continue
        assert result["events"][-1] == b"[DONE]"
        chunks = [json.loads(e) for e in result["events"][:-1]]
        wants_usage = (body.get("stream_options") or {}).get("include_usage", False)
        assert any(c["choices"] == [] for c in chunks) == wants_usage
        continuous = (body.get("stream_options") or {}).get("continuous_usage_stats", False)
        assert all(("usage" in c) == continuous for c in chunks if c["choices"])

    rows = {r.request_id: r for r in wait_rows(database, name, 30)}
    assert len(rows) == 30
    truth = settled(sim, set(rows))
    dropped = {r["id"] for r, (_, _, drop) in results if drop}
    for result, (path, body, _) in results:
        row, sent = rows[result["id"]], truth[result["id"]]
        assert (row.prompt_tokens, row.completion_tokens) == (
            sent["prompt_tokens"],
            sent["completion_tokens"],
        ), (result["id"], body)
        assert row.total_tokens == row.prompt_tokens + row.completion_tokens
        assert row.client_disconnected == sent["disconnected"] == (result["id"] in dropped)
        assert row.cost_micros == charge(row.prompt_tokens, row.completion_tokens)
        assert row.status == 200 and row.stream == bool(body.get("stream"))
        assert row.route == ("chat.completions" if "chat" in path else "completions")
        assert row.model == "simulated/vllm-demo" and row.latency_ms >= 0
        assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    for rid in dropped:  # cut short: fewer tokens than asked, but more than the client read
        assert 3 <= rows[rid].completion_tokens < 200
    assert sum(r.total_tokens for r in rows.values()) == sum(
        truth[rid]["prompt_tokens"] + truth[rid]["completion_tokens"] for rid in rows
    )
    spent = sum(r.cost_micros for r in rows.values())
    assert database.run(store.get_account, name).balance_micros == 50_000_000 - spent


def test_fast_streams_dropped_by_the_client_are_metered_exactly(launcher, sqlite_database):
    """At 2 ms a token several tokens are in flight when the client leaves: the gateway hangs
    up on the upstream and meters what was already sent; the half-closed connection is never
    reused, so the requests after it are served normally."""
    sim = launcher.sim()
    gateway = launcher.gateway(sqlite_database, upstreams=[sim.url], **PRICES, **BULK)
    name, key = sqlite_database.account(tier="bulk", balance_micros=50_000_000)
    msgs = [{"role": "user", "content": "drop me fast"}]
    fast = {"messages": msgs, "stream": True, "max_tokens": 300, "x_sim_token_delay": 0.002}
    results = []
    for i in range(12):
        body = fast | ({"stream_options": {"include_usage": True}} if i % 2 else {})
        results.append(call(gateway, key, "/v1/chat/completions", body, drop_after=3))
        results.append(call(gateway, key, "/v1/chat/completions", {"messages": msgs}))
    assert [r["status"] for r in results] == [200] * 24
    gateway.stop(signal.SIGINT)
    figures = metered_against_sent(sqlite_database, name, sim, results)
    assert figures["rows"] == 24 and figures["metered"] == figures["sent"]
    dropped = [r for r in sim.requests() if r["disconnected"]]
    assert len(dropped) == 12 and all(r["completion_tokens"] < 300 for r in dropped)


def test_upstream_errors_and_midstream_failure_metered_once(launcher, database):
    sim = launcher.sim("--max-model-len", "64")
    gateway = launcher.gateway(database, upstreams=[sim.url], **PRICES, **BULK)
    name, key = database.account(tier="bulk", balance_micros=10_000_000)
    msgs = [{"role": "user", "content": "hi"}]
    too_long = call(gateway, key, "/v1/chat/completions", {"messages": msgs, "max_tokens": 100})
    unknown = call(gateway, key, "/v1/chat/completions", {"model": "nope", "messages": msgs})
    failing = call(
        gateway,
        key,
        "/v1/chat/completions",
        {"messages": msgs, "stream": True, "max_tokens": 20, "x_sim_fail_after": 4},
    )
    assert (too_long["status"], unknown["status"], failing["status"]) == (400, 404, 200)
    assert b"error" in failing["events"][-2] and failing["events"][-1] == b"[DONE]"
    wait_rows(database, name, 2)
    gateway.stop(signal.SIGINT)  # its last flush: whatever it would record is recorded now
    rows = {r.request_id: r for r in database.run(store.usage_records, name)}
    assert set(rows) == {too_long["id"], failing["id"]}  # 404 on model: never admitted
    assert (rows[too_long["id"]].status, rows[too_long["id"]].total_tokens) == (400, 0)
    broken = rows[failing["id"]]
    assert broken.status == 502 and broken.completion_tokens == 4
    assert broken.completion_tokens == sim.request(failing["id"])["completion_tokens"]
    spent = sum(r.cost_micros for r in rows.values())
    assert database.run(store.get_account, name).balance_micros == 10_000_000 - spent


def test_upstream_down_recorded_and_reservation_returned(launcher, sqlite_database):
    gateway = launcher.gateway(
        sqlite_database,
        upstreams=[f"http://127.0.0.1:{free_port()}"],
        PACKET_WARMUP_TIMEOUT="0",
        **PRICES,
        **BULK,
    )
    name, key = sqlite_database.account(tier="bulk", balance_micros=1_000_000)
    result = call(
        gateway,
        key,
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert result["status"] == 503
    settled_balance(sqlite_database, name, 1_000_000, [])


# --- concurrency on PostgreSQL ----------------------------------------------------------------


def _body(i: int) -> dict:
    msgs = [{"role": "user", "content": "the same small prompt for every request"}]
    return {"messages": msgs, "max_tokens": 20, "stream": i % 3 == 0}


def _reservation(body: dict) -> int:
    """What admission holds for ``body``: prompt estimated from the JSON bytes, max_tokens."""
    return charge(len(json.dumps(body).encode()) // 4 + 1, body["max_tokens"])


def test_hundred_concurrent_requests_balance_exact(launcher, postgres_database):
    sim = launcher.sim("--token-delay", "0.002")
    gateway = launcher.gateway(postgres_database, upstreams=[sim.url], workers=2, **PRICES, **BULK)
    initial = 100_000_000
    name, key = postgres_database.account(tier="bulk", balance_micros=initial)
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(
            pool.map(lambda i: call(gateway, key, "/v1/chat/completions", _body(i)), range(100))
        )
    assert [r["status"] for r in results] == [200] * 100
    rows = wait_rows(postgres_database, name, 100)
    assert len(rows) == 100 and len({r.request_id for r in rows}) == 100
    settled_balance(postgres_database, name, initial, rows)
    assert all(r.cost_micros == charge(r.prompt_tokens, r.completion_tokens) > 0 for r in rows)


def test_small_balance_never_overdrawn_beyond_one_request(launcher, postgres_database):
    sim = launcher.sim("--token-delay", "0.005")
    gateway = launcher.gateway(postgres_database, upstreams=[sim.url], workers=2, **PRICES, **BULK)
    one = charge(3 + 7, 20)  # the simulator's tokens for _body(): 3 + 7 words, 20 completion
    reservation = max(_reservation(_body(0)), _reservation(_body(1)))
    assert reservation >= one
    initial = 10 * one
    name, key = postgres_database.account(tier="bulk", balance_micros=initial)

    lowest = [initial]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            lowest[0] = min(
                lowest[0], postgres_database.run(store.get_account, name).balance_micros
            )
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(
                pool.map(lambda i: call(gateway, key, "/v1/chat/completions", _body(i)), range(100))
            )
        rows = wait_rows(postgres_database, name, sum(r["status"] == 200 for r in results))
        settled_balance(postgres_database, name, initial, rows)
    finally:
        stop.set()
        watcher.join(5)
    statuses = [r["status"] for r in results]
    assert set(statuses) <= {200, 403}, statuses
    assert 1 <= statuses.count(200) <= 20 and statuses.count(403) >= 80
    refused = next(r for r in results if r["status"] == 403)["body"].json()["error"]
    assert refused["code"] == "insufficient_quota"
    assert len(rows) == statuses.count(200)
    final = postgres_database.run(store.get_account, name).balance_micros
    assert final == initial - sum(r.cost_micros for r in rows)
    assert min(lowest[0], final) >= -reservation


# --- shutdown ---------------------------------------------------------------------------------


def streaming(sim, request_id: str) -> bool:
    """Whether the simulator has begun sending tokens for ``request_id``."""
    return any(r["request_id"] == request_id and r["completion_tokens"] for r in sim.requests())


def test_usage_buffered_at_sigterm_is_flushed(launcher, database):
    sim = launcher.sim()
    gateway = launcher.gateway(
        database,
        upstreams=[sim.url],
        PACKET_USAGE_FLUSH_INTERVAL="3600",
        GUNICORN_GRACEFUL_TIMEOUT="20",
        **PRICES,
        **BULK,
    )
    name, key = database.account(tier="bulk", balance_micros=5_000_000)
    msgs = [{"role": "user", "content": "flush me"}]
    done = [
        call(
            gateway,
            key,
            "/v1/chat/completions",
            {"messages": msgs, "max_tokens": 5, "stream": i % 2 == 0},
        )
        for i in range(6)
    ]
    assert [r["status"] for r in done] == [200] * 6
    # Still running at SIGTERM: the graceful stop lets it finish, then it is flushed too.
    slow_body = {"messages": msgs, "max_tokens": 30, "stream": True, "x_sim_token_delay": 0.05}
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(call, gateway, key, "/v1/chat/completions", slow_body, rid="t-slow")
        until(lambda: streaming(sim, "t-slow"), "the slow stream to start")
        assert database.run(store.usage_records, name) == []  # all still buffered
        gateway.stop(signal.SIGTERM)
        running = slow.result(30)
    assert running["status"] == 200 and running["events"][-1] == b"[DONE]"
    rows = {r.request_id: r for r in database.run(store.usage_records, name)}
    assert set(rows) == {r["id"] for r in [*done, running]}
    assert rows[running["id"]].completion_tokens == 30
    spent = sum(r.cost_micros for r in rows.values())
    assert database.run(store.get_account, name).balance_micros == 5_000_000 - spent
    assert "usage flush failed" not in gateway.log.read_text()


def test_stream_killed_at_graceful_timeout_is_still_metered(launcher, sqlite_database):
    sim = launcher.sim()
    gateway = launcher.gateway(
        sqlite_database,
        upstreams=[sim.url],
        PACKET_USAGE_FLUSH_INTERVAL="3600",
        GUNICORN_GRACEFUL_TIMEOUT="3",
        **PRICES,
        **BULK,
    )
    name, key = sqlite_database.account(tier="bulk", balance_micros=5_000_000)
    body = {
        "messages": [{"role": "user", "content": "long"}],
        "max_tokens": 400,
        "stream": True,
        "x_sim_token_delay": 0.02,
    }
    with ThreadPoolExecutor(max_workers=1) as pool:
        stream = pool.submit(call, gateway, key, "/v1/chat/completions", body, rid="t-long")
        until(lambda: streaming(sim, "t-long"), "the stream to start")
        gateway.stop(signal.SIGTERM)
        with pytest.raises(requests.RequestException):
            stream.result(30)  # the worker was stopped mid-stream
    (row,) = sqlite_database.run(store.usage_records, name)
    sent = sim.requests()[-1]
    assert 0 < row.completion_tokens <= sent["completion_tokens"] < 400
    assert row.status == 502
    spent = row.cost_micros
    assert sqlite_database.run(store.get_account, name).balance_micros == 5_000_000 - spent


# --- admin changes reach every worker -----------------------------------------------------------


def test_admin_changes_reach_every_worker_within_the_cache_ttl(launcher, sqlite_database):
    """Two workers, each with its own auth cache (TTL 1 s): the admin API's changes apply to
    every request within the TTL, whichever worker serves it."""
    ttl, token = 1.0, f"adm-{uuid.uuid4().hex}"
    sim = launcher.sim()
    gateway = launcher.gateway(
        sqlite_database,
        upstreams=[sim.url],
        workers=2,
        PACKET_AUTH_CACHE_TTL=str(ttl),
        PACKET_AUTH_FAILURES_PER_WINDOW="0",  # the revoked key's 401s are awaited, not throttled
        PACKET_ADMIN_TOKEN=token,
        PACKET_TIERS='{"bulk": {"rpm": 1000000, "tpm": 10000000}, "wide": {"rpm": 999999, "tpm": 10000000}}',
        **PRICES,
    )
    admin = f"{gateway.url}/admin/v1/accounts"
    headers = {"Authorization": f"Bearer {token}"}
    name = f"prop-{uuid.uuid4().hex[:8]}"
    created = requests.post(
        admin, json={"name": name, "tier": "bulk", "balance": 1}, headers=headers, timeout=5
    )
    assert created.status_code == 201
    key = requests.post(f"{admin}/{name}/keys", headers=headers, timeout=5).json()["key"]
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

    def ask() -> requests.Response:
        return requests.post(
            f"{gateway.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
            timeout=10,
        )

    def settles(check) -> float:
        """Seconds until 12 requests in a row (spread over both workers) pass ``check``."""
        start, streak = time.monotonic(), 0
        while streak < 12:
            last = ask()
            assert time.monotonic() - start < ttl + 5, (last.status_code, last.text)
            streak = streak + 1 if check(last) else 0
        return time.monotonic() - start

    assert all(ask().status_code == 200 for _ in range(12))  # both workers have it cached

    changes = [
        ("patch", "", {"tier": "wide"}, lambda r: r.headers.get("X-RateLimit-Limit") == "999999"),
        ("post", "/credit", {"amount": -5}, lambda r: r.status_code == 403),
        ("post", "/credit", {"amount": 10}, lambda r: r.status_code == 200),
    ]
    waits = []
    for method, path, payload, check in changes:
        changed = getattr(requests, method)(
            f"{admin}/{name}{path}", json=payload, headers=headers, timeout=5
        )
        assert changed.status_code == 200
        waits.append(settles(check))
    key_id = requests.get(f"{admin}/{name}/keys", headers=headers, timeout=5).json()["data"][0][
        "id"
    ]
    assert (
        requests.delete(f"{admin}/{name}/keys/{key_id}", headers=headers, timeout=5).status_code
        == 200
    )
    waits.append(settles(lambda r: r.status_code == 401))
    # Bound: the cache TTL (plus the time the 12 confirming requests take).
    assert max(waits) < ttl + 2, waits
