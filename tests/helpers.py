"""Helpers shared by the live tests: requests with their own id, waiting for usage rows, and
the price arithmetic the gateway must apply."""

from __future__ import annotations

import time
import uuid

import requests

from packet import store

PRICES = {"PACKET_PRICE_INPUT": "100", "PACKET_PRICE_OUTPUT": "300"}  # $ per million tokens
BULK = {"PACKET_TIERS": '{"bulk": {"rpm": 1000000, "tpm": 1000000000}}'}
IN, OUT = 100_000_000, 300_000_000  # the prices above in micro-dollars per million


def charge(prompt: int, completion: int) -> int:
    """The gateway's rule: micro-dollars, rounded up per request."""
    return -(-(prompt * IN + completion * OUT) // 1_000_000)


def call(gateway, key: str, path: str, body: dict, *, drop_after: int | None = None) -> dict:
    """One request with its own X-Request-ID; streams are read (or dropped) event by event."""
    rid = f"t-{uuid.uuid4().hex}"
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
