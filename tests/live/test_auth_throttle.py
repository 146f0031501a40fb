"""Failed key attempts against the real gateway (gunicorn + gevent worker): the budget per
client address, the 429 for any key once it is spent, addresses behind a trusted proxy, Redis
shared by several workers and gateways, and an unreachable Redis."""

from __future__ import annotations

import uuid

import pytest
import requests
from helpers import LONG, fresh_window, get
from openai import RateLimitError
from processes import REDIS_URL, free_port, needs_redis

pytestmark = pytest.mark.live

BUDGET = "5"
UNKNOWN = "pk_live_" + "Z" * 40


def models(gateway, key: str | None, forwarded_for: str | None = None) -> requests.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return get(gateway, key, "/v1/models", headers=headers)


def assert_throttled(response: requests.Response) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "failed API key attempts" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= LONG
    assert int(response.headers["retry-after-ms"]) > 0


def test_sixth_bad_key_is_429_and_then_a_valid_key_too(start_gateway, sqlite_database, sim):
    gateway = start_gateway(
        sqlite_database,
        [sim.url],
        PACKET_AUTH_FAILURES_PER_WINDOW=BUDGET,
        PACKET_LIMIT_WINDOW_SECONDS=str(LONG),
    )
    _, key = sqlite_database.account()
    fresh_window(LONG, 60)
    # No trusted proxy: X-Forwarded-For is the client's own claim and changes nothing.
    attempts = [None, "sk-wrong", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]
    statuses = [models(gateway, k, f"203.0.113.{i}").status_code for i, k in enumerate(attempts)]
    assert statuses == [401] * 5 + [429]
    assert_throttled(models(gateway, UNKNOWN))
    assert_throttled(models(gateway, key))
    assert_throttled(get(gateway, key, "/health"))
    assert get(gateway, None, "/health").status_code == 200  # no key
    with pytest.raises(RateLimitError) as refused:
        gateway.client(key).models.list()
    assert refused.value.code == "rate_limit_exceeded"


def test_addresses_behind_a_trusted_proxy_are_counted_apart(start_gateway, sqlite_database, sim):
    gateway = start_gateway(
        sqlite_database,
        [sim.url],
        PACKET_AUTH_FAILURES_PER_WINDOW=BUDGET,
        PACKET_LIMIT_WINDOW_SECONDS=str(LONG),
        PACKET_TRUSTED_PROXIES="127.0.0.1/32",
    )
    _, key = sqlite_database.account()
    fresh_window(LONG, 60)
    attacker, neighbour = "6.6.6.6, 203.0.113.7", "203.0.113.8"  # the left part is forged
    statuses = [models(gateway, UNKNOWN, attacker).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    assert_throttled(models(gateway, key, "203.0.113.7"))
    assert models(gateway, key, neighbour).status_code == 200
    assert models(gateway, UNKNOWN, neighbour).status_code == 401
    assert models(gateway, key).status_code == 200  # the proxy itself


@needs_redis
def test_workers_and_gateways_share_the_count_on_redis(launcher, sqlite_database, sim):
    shared = {
        "REDIS_URL": REDIS_URL,
        "PACKET_LIMIT_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "PACKET_LIMIT_WINDOW_SECONDS": str(LONG),
        "PACKET_AUTH_FAILURES_PER_WINDOW": BUDGET,
    }
    gateways = [launcher.gateway(sqlite_database, [sim.url], workers=2, **shared) for _ in range(2)]
    fresh_window(LONG, 60)
    statuses = [models(gateways[i % 2], UNKNOWN).status_code for i in range(12)]
    assert statuses == [401] * 5 + [429] * 7, "one budget for every worker of both gateways"


def test_unreachable_redis_never_throttles_nor_fails(start_gateway, sqlite_database, sim):
    gateway = start_gateway(
        sqlite_database,
        [sim.url],
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        PACKET_AUTH_FAILURES_PER_WINDOW="2",
        health=503,  # the limit storage is down, by design
    )
    _, key = sqlite_database.account()
    assert [models(gateway, UNKNOWN).status_code for _ in range(5)] == [401] * 5
    assert models(gateway, key).status_code == 200  # limits fail open by default
