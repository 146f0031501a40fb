"""Helpers shared by the live tests: requests with their own id, waiting for usage rows, and
the price arithmetic the gateway must apply."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from packet import store

PRICES = {"PACKET_PRICE_INPUT": "100", "PACKET_PRICE_OUTPUT": "300"}  # $ per million tokens
BULK = {"PACKET_TIERS": '{"bulk": {"rpm": 1000000, "tpm": 1000000000}}'}
IN, OUT = 100_000_000, 300_000_000  # the prices above in micro-dollars per million


def charge(prompt: int, completion: int) -> int:
    """The gateway's rule: micro-dollars, rounded up per request."""
    return -(-(prompt * IN + completion * OUT) // 1_000_000)


def call(
    gateway, key: str, path: str, body: dict, *, drop_after: int | None = None, rid: str = ""
) -> dict:
    """One request with its own X-Request-ID; streams are read (or dropped) event by event."""
    rid = rid or f"t-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": rid, "Connection": "close"}
    with requests.post(
        f"{gateway.url}{path}", json=body, headers=headers, stream=True, timeout=30
    ) as response:
        events = []
        if response.status_code == 200 and body.get("stream"):
            for line in response.iter_lines():
                if line.startswith(b"data: "):
                    events.append(line[6:])
                    if drop_after is not None and len(events) >= drop_after:
                        break
        else:
            response.content  # noqa: B018 - read it all
        assert response.headers["X-Request-ID"] == rid
        return {"id": rid, "status": response.status_code, "events": events, "body": response}


def wait_rows(database, name: str, count: int, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = database.run(store.usage_records, name)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def settled(sim, ids: set[str], timeout: float = 10.0) -> dict[str, dict]:
    """The simulator's records of ``ids`` once each stream has finished or seen its client go."""
    deadline = time.monotonic() + timeout
    while True:
        truth = {r["request_id"]: r for r in sim.requests() if r["request_id"] in ids}
        if all(r["finished"] or r["disconnected"] for r in truth.values()):
            return truth
        assert time.monotonic() < deadline, "the simulator never saw some streams end"
        time.sleep(0.05)


def mixed(i: int) -> tuple[str, dict]:
    """The ``i``-th request of a mixed load: chat, chat streams with and without usage, and
    completions, each a few tokens long."""
    msgs = [{"role": "user", "content": f"request number {i} of the mixed load"}]
    slow = {"x_sim_token_delay": 0.005}
    return [
        ("/v1/chat/completions", {"messages": msgs, "max_tokens": 8}),
        (
            "/v1/chat/completions",
            {"messages": msgs, "max_tokens": 12, "stream": True}
            | {"stream_options": {"include_usage": True}}
            | slow,
        ),
        ("/v1/completions", {"prompt": f"once upon a time {i}", "max_tokens": 6}),
        ("/v1/chat/completions", {"messages": msgs, "max_tokens": 10, "stream": True} | slow),
    ][i % 4]


class Load:
    """Requests from ``threads`` threads until stopped, or ``count`` are sent, or ``seconds``
    have passed; each keeps its id, status (None when the connection broke), Retry-After and
    the time it was sent. ``plan(i)`` gives the i-th request: (path, body), or (path, body,
    events after which the client drops the stream)."""

    def __init__(
        self,
        gateway,
        key: str,
        plan: Callable[[int], tuple] = mixed,
        *,
        threads: int = 8,
        count: int = 5000,
        seconds: float = 60.0,
    ) -> None:
        self.gateway, self.key, self.plan = gateway, key, plan
        self.threads, self.count, self.seconds = threads, count, seconds
        self.results: list[dict] = []
        self._stop = threading.Event()
        self._next = iter(range(count))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self.started = time.monotonic()

    def start(self) -> Load:
        self._futures = [self._pool.submit(self._run) for _ in range(self.threads)]
        return self

    def _run(self) -> None:
        deadline = self.started + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                i = next(self._next, None)
            if i is None:
                return
            path, body, *drop = self.plan(i)
            rid, sent = f"t-{uuid.uuid4().hex}", time.monotonic() - self.started
            try:
                result = call(
                    self.gateway, self.key, path, body, rid=rid, drop_after=next(iter(drop), None)
                )
                result["retry_after"] = result.pop("body").headers.get("Retry-After")
            except requests.RequestException:
                result = {"id": rid, "status": None, "events": [], "retry_after": None}
            result["sent"] = sent
            with self._lock:
                self.results.append(result)

    def stop(self) -> list[dict]:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=120)
        self._pool.shutdown()
        return self.results

    def statuses(self) -> Counter:
        return Counter(r["status"] for r in self.results)


def metered_against_sent(
    database, name: str, sim, results: list[dict], seen: dict[str, dict] | None = None
) -> dict[str, int]:
    """Every request the simulator saw has exactly one usage row with exactly the tokens it
    sent (rows recovered from a dead worker's checkpoint may have fewer, never more);
    returns the totals. ``seen``: records collected earlier, for runs longer than the
    simulator's history."""
    ids = {r["id"] for r in results}
    served = {r["request_id"] for r in [*(seen or {}).values(), *sim.requests()]} & ids
    truth = (seen or {}) | settled(sim, served, timeout=30)
    assert all(r["finished"] or r["disconnected"] for r in truth.values()), "a stream never ended"
    rows = [r for r in database.run(store.usage_records, name) if r.request_id in ids]
    by_id = {r.request_id: r for r in rows}
    assert len(by_id) == len(rows), "a request was metered twice"
    missing = set(truth) - set(by_id)
    unmetered = {r["id"]: r["status"] for r in results if r["id"] in missing}
    assert not unmetered, f"{len(unmetered)} served, no usage row: {list(unmetered.items())[:5]}"
    unserved = {
        rid: (row.status, row.completion_tokens) for rid, row in by_id.items() if rid not in truth
    }
    assert not unserved, f"{len(unserved)} rows never served: {list(unserved.items())[:5]}"
    for rid, sent in truth.items():
        row = by_id[rid]
        metered = (row.prompt_tokens, row.completion_tokens, row.usage_source)
        upstream = (sent["prompt_tokens"], sent["completion_tokens"])
        asked = {k: v for k, v in sent["body"].items() if k not in ("messages", "prompt")}
        asked |= {"disconnected": sent["disconnected"]}
        if row.usage_source == "recovered":
            assert metered[1] <= upstream[1], (rid, metered, upstream, asked)
        else:
            assert metered[:2] == upstream, (rid, metered, upstream, asked)
    return {
        "served": len(truth),
        "rows": len(rows),
        "recovered": sum(r.usage_source == "recovered" for r in rows),
        "metered": sum(r.completion_tokens for r in rows),
        "sent": sum(t["completion_tokens"] for t in truth.values()),
        "cost": sum(r.cost_micros for r in rows),
    }
