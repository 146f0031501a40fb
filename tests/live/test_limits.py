"""Tier limits against the real gateway (gunicorn + gevent worker) and the simulated vLLM:
request and token limits, headers, 429s and the openai SDK, bursts, and Redis shared by
several gateways (or unreachable, with both policies).

Windows are aligned to the clock, so tests that must stay inside one window first wait for a
window with enough time left (:func:`fresh_window`) instead of asserting on timing.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import redis
import requests
from helpers import LONG, RATE_HEADERS, fresh_window, get, post, until
from openai import RateLimitError
from processes import REDIS_URL, needs_redis

pytestmark = pytest.mark.live

SHORT = 4  # seconds: a window short enough to wait for its reset
TIERS = orjson.dumps(
    {
        "tiny": {"rpm": 1000, "tpm": 300},
        "budget": {"rpm": 1000, "tpm": 1000},
        "roomy": {"rpm": 1000, "tpm": 5000},
        "three": {"rpm": 3, "tpm": 100000},
    }
).decode()


def chat_bytes(max_tokens: int = 5, **extra) -> bytes:
    """A chat body, serialised here so its length (the gateway's prompt estimate) is known."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, **extra}
    return orjson.dumps(body)


def reservation(body: bytes, max_tokens: int) -> int:
    """What the gateway reserves at admission: bytes / 4 + 1 for the prompt, plus max_tokens."""
    return len(body) // 4 + 1 + max_tokens


def tokens_used(gateway, key: str, tpm: int) -> int:
    """The account's token counter, read from the headers of a request that reserves nothing."""
    response = get(gateway, key, "/v1/models")
    return tpm - int(response.headers["x-ratelimit-remaining-tokens"])


def assert_rate_headers(response: requests.Response) -> None:
    missing = [name for name in RATE_HEADERS if name not in response.headers]
    assert not missing, f"{response.status_code} lacks {missing}"


@pytest.fixture(scope="module")
def short(module_launcher, _databases, module_sim):
    """A gateway whose windows last SHORT seconds."""
    return module_launcher.gateway(
        _databases["sqlite"],
        upstreams=[module_sim.url],
        PACKET_LIMIT_WINDOW_SECONDS=str(SHORT),
        PACKET_TIERS=TIERS,
    )


@pytest.fixture(scope="module")
def long(module_launcher, _databases, module_sim):
    """A gateway whose windows outlast the tests."""
    return module_launcher.gateway(
        _databases["sqlite"],
        upstreams=[module_sim.url],
        PACKET_LIMIT_WINDOW_SECONDS=str(LONG),
        PACKET_TIERS=TIERS,
    )


def test_free_tier_20_requests_then_429_and_the_sdk(short, _databases):
    _, key = _databases["sqlite"].account(tier="free")
    fresh_window(SHORT, SHORT - 0.5)
    body = chat_bytes()
    for _ in range(20):
        response = post(short, key, body)
        assert response.status_code == 200
        assert_rate_headers(response)
    response = post(short, key, body)
    assert response.status_code == 429
    assert_rate_headers(response)
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
    assert "requests per minute: limit 20" in error["message"]
    reset = int(response.headers["X-RateLimit-Reset"])
    assert reset % SHORT == 0 and reset > time.time() - 0.5
    assert 1 <= int(response.headers["Retry-After"]) <= SHORT
    assert f"at Unix time {reset}" in error["message"]
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["x-ratelimit-limit-requests"] == "20"
    assert response.headers["x-ratelimit-limit-tokens"] == "40000"

    with pytest.raises(RateLimitError) as refused:
        short.client(key, max_retries=0).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    assert refused.value.code == "rate_limit_exceeded"

    started = time.monotonic()
    answer = short.client(key, max_retries=3).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert answer.choices[0].message.content
    assert time.monotonic() - started < SHORT + 2, "the SDK waited for Retry-After, not longer"


def test_stream_usage_is_counted_and_spends_the_budget_until_reset(short, module_sim, _databases):
    _, key = _databases["sqlite"].account(tier="tiny")  # 300 tokens per window
    fresh_window(SHORT, SHORT - 0.5)
    body = chat_bytes(max_tokens=100, stream=True)
    real = 0
    for _ in range(3):
        response = post(short, key, body)
        assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
        record = module_sim.request(response.headers["X-Request-ID"])
        real += record["prompt_tokens"] + record["completion_tokens"]
        if real < 300:
            assert tokens_used(short, key, 300) == real
    assert real >= 300
    refused = post(short, key, chat_bytes())
    assert refused.status_code == 429
    assert_rate_headers(refused)
    assert refused.json()["error"]["type"] == "tokens"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-limit-tokens"] == "300"
    wait = int(refused.headers["retry-after-ms"]) / 1000
    assert 0 < wait <= SHORT
    time.sleep(wait)
    assert post(short, key, chat_bytes()).status_code == 200


def test_disconnected_stream_counts_what_was_generated(long, module_sim, _databases):
    _, key = _databases["sqlite"].account(tier="roomy")
    body = chat_bytes(max_tokens=300, stream=True, x_sim_token_delay=0.02)
    held = reservation(body, 300)
    received = 0
    with post(long, key, body, stream=True) as response:
        request_id = response.headers["X-Request-ID"]
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                received += 1
            if received == 10:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not module_sim.request(request_id)["disconnected"]:
        time.sleep(0.05)
    record = module_sim.request(request_id)
    assert record["disconnected"]
    used = tokens_used(long, key, 5000)
    while time.monotonic() < deadline and used == held:  # settles when the relay notices
        time.sleep(0.05)
        used = tokens_used(long, key, 5000)
    generated = record["prompt_tokens"] + record["completion_tokens"]
    assert record["prompt_tokens"] + received - 1 <= used <= generated < held


def test_rejected_requests_consume_no_tokens(long, module_sim, _databases):
    database = _databases["sqlite"]
    _, key = database.account(tier="budget")
    _, broke = database.account(tier="budget", balance_micros=0)
    cases = [
        (key, chat_bytes(max_tokens=5000), 400),  # vLLM: context length exceeded, after admission
        (key, b'{"messages": []}', 400),  # our validation, before admission
        (key, chat_bytes(model="no-such-model"), 404),
        (broke, chat_bytes(), 403),  # balance, after admission
    ]
    for who, body, status in cases:
        response = post(long, who, body)
        assert response.status_code == status, response.text
        assert_rate_headers(response)
        assert response.headers["x-ratelimit-remaining-tokens"] == "1000"
    assert tokens_used(long, key, 1000) == 0
    assert tokens_used(long, broke, 1000) == 0


def burst(gateways, key: str, tpm: int) -> None:
    """Spend most of the budget, then 50 concurrent requests: the overshoot is bounded by
    one reservation, and once they have ended the counter equals the real usage."""
    spent = post(gateways[0], key, chat_bytes(max_tokens=tpm - 304)).json()["usage"]["total_tokens"]
    body = chat_bytes(max_tokens=50, x_sim_token_delay=0.01)
    with ThreadPoolExecutor(50) as pool:
        responses = list(
            pool.map(lambda i: post(gateways[i % len(gateways)], key, body), range(50))
        )
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(refused) == 50
    assert admitted and refused
    assert all(r.json()["error"]["type"] == "tokens" for r in refused)
    real = spent + sum(r.json()["usage"]["total_tokens"] for r in admitted)
    assert real <= tpm + reservation(body, 50)
    assert spent + len(admitted) * reservation(body, 50) < tpm + reservation(body, 50)
    assert real < tpm, "the test's figures keep the real usage readable from the headers"
    for gateway in gateways:
        assert settled_usage(gateway, key, tpm, real) == real


def settled_usage(gateway, key: str, tpm: int, expected: int, within: float = 1.0) -> int:
    """The token counter once other workers' queued settlements are written (≤ 50 ms each)."""
    deadline = time.monotonic() + within
    while (used := tokens_used(gateway, key, tpm)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return used


def test_burst_against_a_nearly_spent_budget(long, _databases):
    _, key = _databases["sqlite"].account(tier="budget")
    burst([long], key, 1000)


# --- Redis ----------------------------------------------------------------------------------


@needs_redis
def test_two_gateways_share_one_redis_limit(launcher, database, module_sim):
    shared = {
        "REDIS_URL": REDIS_URL,
        "PACKET_LIMIT_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "PACKET_LIMIT_WINDOW_SECONDS": str(LONG),
        "PACKET_TIERS": TIERS,
    }
    gateways = [launcher.gateway(database, [module_sim.url], workers=2, **shared) for _ in range(2)]
    _, key = database.account(tier="free")
    fresh_window(LONG, 30)
    statuses = [post(gateways[i % 2], key, chat_bytes()).status_code for i in range(30)]
    assert statuses.count(200) == 20 and statuses[20:] == [429] * 10

    _, key = database.account(tier="budget")
    burst(gateways, key, 1000)


@needs_redis
def test_one_redis_round_trip_per_request(launcher, sqlite_database, module_sim, private_redis):
    """Count, token reservation and the previous request's settlement: one script call."""
    private_redis.start()
    gateway = launcher.gateway(
        sqlite_database,
        [module_sim.url],
        REDIS_URL=f"redis://127.0.0.1:{private_redis.port}/0",
        PACKET_TIERS=TIERS,
    )
    _, key = sqlite_database.account(tier="budget")
    assert (
        post(gateway, key, chat_bytes()).status_code == 200
    )  # connects, loads the admission script
    time.sleep(0.2)  # the settlement timer loads its script
    client = redis.Redis(port=private_redis.port)

    def commands() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: stats[name]["calls"] for name in stats}

    before = commands()
    for body in (chat_bytes(), chat_bytes(stream=True, max_tokens=3)) * 5:
        assert post(gateway, key, body).status_code == 200
    models = requests.get(
        f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert models.status_code == 200
    after = commands()
    calls = {name: after[name] - before.get(name, 0) for name in after}
    calls.pop("cmdstat_info")
    made = {name.removeprefix("cmdstat_"): n for name, n in calls.items() if n}
    # 11 admissions; settlements ride along, or a timer writes the last ones (a few at most).
    # (The commands a script runs are counted too: one incr per admission, the request count.)
    assert 11 <= made["evalsha"] <= 14, made
    assert made["incr"] == 11, made
    setup = {"hello", "client|setinfo", "script|load"}  # a second pooled connection at most
    assert all(made[name] <= 2 for name in setup & set(made)), made
    assert set(made) <= {"evalsha", "incr", "incrby", "get", "exists"} | setup, made


@needs_redis
@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_redis_down_at_start_and_mid_run_follows_the_policy(
    fail_open, launcher, sqlite_database, module_sim, private_redis
):
    gateway = launcher.gateway(
        sqlite_database,
        [module_sim.url],
        REDIS_URL=f"redis://127.0.0.1:{private_redis.port}/0",
        PACKET_LIMITS_FAIL_OPEN=str(fail_open).lower(),
        PACKET_LIMIT_WINDOW_SECONDS=str(LONG),
        PACKET_TIERS=TIERS,
        health=503,  # its Redis is not started yet
    )
    _, key = sqlite_database.account(tier="three")  # 3 requests per window
    fresh_window(LONG, 60)

    def send() -> requests.Response:
        return post(gateway, key, chat_bytes())

    def degraded() -> None:
        for _ in range(5):  # more than the tier allows
            response = send()
            assert_rate_headers(response)
            if fail_open:
                assert response.status_code == 200
            else:
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "service_unavailable"
                assert "storage is unreachable" in response.json()["error"]["message"]

    degraded()  # Redis down when the gateway started
    private_redis.start()
    until(lambda: send().headers["X-RateLimit-Remaining"] == "2", "limits to apply again")
    assert [send().status_code for _ in range(3)] == [200, 200, 429]

    private_redis.kill()  # mid-run
    degraded()
    health = requests.get(f"{gateway.url}/health", timeout=10)
    assert (health.status_code, health.json()["limit_storage"]) == (503, "unavailable")
    metrics = requests.get(f"{gateway.url}/metrics", timeout=10)
    assert metrics.status_code == 200, "routes without limits never depend on the storage"
    errors = [
        float(line.split()[1])
        for line in metrics.text.splitlines()
        if line.startswith("packet_limit_storage_errors_total{kind=")
    ]
    assert errors and sum(errors) >= 1
    assert "limit storage unreachable" in gateway.output()

    private_redis.start()  # empty again: the window starts over
    until(lambda: send().headers["X-RateLimit-Remaining"] == "2", "limits to apply again")
    assert [send().status_code for _ in range(3)] == [200, 200, 429]
    assert "limit storage reachable again" in gateway.output()
    assert key not in gateway.output()
