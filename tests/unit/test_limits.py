"""Tier limits without a server: the window counters on a controlled clock (in memory and, when
reachable, on Redis through the admission script), the storage policy, and the request limit,
headers and 429s through Flask's test client (live: tests/live/test_limits.py)."""

from __future__ import annotations

import uuid

import pytest
from flask_migrate import upgrade
from helpers import RATE_HEADERS, BrokenStorage, Clock
from limits.storage import MemoryStorage, storage_from_string
from processes import REDIS_URL
from redis.exceptions import ResponseError

from packet import create_app, store
from packet.errors import InsufficientQuota, RateLimitExceeded, ServiceUnavailable
from packet.key_controls import KeyControls, period_of
from packet.limits import MAX_ESTIMATE, StorageGuard, WindowLimits, duration
from packet.limits.window import KeyLimit


def budget(storage=None, *, fail_open=True, clock=None, errors=None, prefix="t"):
    storage = storage or MemoryStorage()
    clock = clock or Clock()
    guard = StorageGuard(
        storage,
        fail_open=fail_open,
        on_error=(lambda exc: errors.append(1)) if errors is not None else (lambda exc: None),
        clock=clock,
    )
    return WindowLimits(storage, 60, prefix=prefix, guard=guard, clock=clock)


class OtherStorage(MemoryStorage):
    """Stands for a storage with no faster path (memcached, a Redis cluster): the limits API."""


@pytest.fixture(params=["memory", "storage-api", "redis"])
def tokens(request):
    """Window limits on each path: memory:// (a dict), any other storage (the limits API, call
    by call), Redis (one script per admission)."""
    if request.param == "memory":
        return budget()
    if request.param == "storage-api":
        return budget(OtherStorage())
    if not REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set (no Redis on this machine)")
    return budget(storage_from_string(REDIS_URL), prefix=f"test-{uuid.uuid4().hex[:8]}")


def take(limits, account, *, tpm, estimate, rpm=1_000_000):
    """Admit like a completion does: the reservation, or the 429 raised."""
    reservation = limits.admit(account, rpm=rpm, tpm=tpm, estimate=estimate)
    if reservation is not None and not reservation.admitted:
        raise limits.refusal(reservation, rpm, tpm)
    return reservation


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (1.5, "1.5s"), (6, "6s"), (59.94, "59.9s"), (60, "1m0s"), (360, "6m0s")],
)
def test_duration_is_openai_format(seconds, text):
    assert duration(seconds) == text


# --- token budget -------------------------------------------------------------------------------


def test_spent_budget_refuses_until_the_window_resets(tokens):
    first = take(tokens, 1, tpm=100, estimate=80)
    tokens.settle(first, 120)  # real usage may exceed the estimate: it is what counts
    assert tokens.used(1) == 120
    with pytest.raises(RateLimitExceeded) as refused:
        take(tokens, 1, tpm=100, estimate=10)
    assert refused.value.type == "tokens"
    assert refused.value.headers["Retry-After"] == "50"  # 10 s into a 60 s window
    assert refused.value.headers["retry-after-ms"] == "50000"
    assert "resets in 50s" in refused.value.message
    assert tokens.used(1) == 120, "a refused request consumes nothing"
    tokens.clock.now += 50
    assert take(tokens, 1, tpm=100, estimate=10) is not None


def test_requests_and_tokens_are_counted_in_one_admission(tokens):
    counted = [tokens.admit(3, rpm=2, tpm=100, estimate=10) for _ in range(3)]
    assert [(r.requests, r.counter, r.admitted) for r in counted] == [
        (1, 10, True),
        (2, 20, True),
        (3, 20, False),  # over the rpm: counted, no tokens reserved
    ]
    with pytest.raises(RateLimitExceeded) as refused:
        raise tokens.refusal(counted[2], 2, 100)
    assert refused.value.type == "requests"
    over = tokens.admit(3, rpm=2, tpm=100, estimate=None)
    assert (over.requests, over.counter, over.admitted) == (4, 20, False)
    only_counted = tokens.admit(4, rpm=2, tpm=0, estimate=None)  # no token check at all
    assert (only_counted.requests, only_counted.counter, only_counted.admitted) == (1, 0, True)
    tokens.settle(only_counted, 50)  # a count carries no reservation to settle
    assert tokens.used(4) == 0


def test_queued_settlements_ride_with_the_next_admission(tokens):
    held = take(tokens, 5, tpm=1000, estimate=500)
    tokens.settle(held, 40)
    assert tokens.used(5) == 40  # the queue counts, before it is written
    after = take(tokens, 5, tpm=1000, estimate=10)
    assert after.counter == 50  # the settlement was applied before this reservation
    tokens.flush()
    assert tokens.used(5) == 50


def test_settlement_lands_in_the_admitting_window(tokens):
    held = take(tokens, 7, tpm=1000, estimate=500)
    tokens.clock.now += 60  # the stream ends in the next window
    tokens.settle(held, 40)
    assert tokens.used(7) == 0
    tokens.clock.now -= 60
    assert tokens.used(7) == 40


def test_estimates_never_lock_out_after_reconciliation(tokens):
    held = [take(tokens, 1, tpm=1000, estimate=400) for _ in range(3)]
    with pytest.raises(RateLimitExceeded):
        take(tokens, 1, tpm=1000, estimate=400)  # 1200 reserved in flight
    for reservation in held:
        tokens.settle(reservation, 50)
        tokens.settle(reservation, 999)  # settling twice changes nothing
    assert tokens.used(1) == 150
    assert take(tokens, 1, tpm=1000, estimate=400) is not None


def test_burst_overshoots_by_at_most_one_reservation_and_reconciles_exactly(tokens):
    """50 requests admitted concurrently (all before any ends) against a nearly spent budget."""
    tokens.settle(take(tokens, 1, tpm=1000, estimate=10), 900)
    admitted, refused = [], 0
    for i in range(50):
        try:
            admitted.append(take(tokens, 1, tpm=1000, estimate=30 + i))
        except RateLimitExceeded:
            refused += 1
    reserved = sum(r.reserved for r in admitted)
    assert admitted and refused
    assert 900 + reserved <= 1000 + max(r.reserved for r in admitted)
    for reservation in admitted:
        tokens.settle(reservation, 20)
    assert tokens.used(1) == 900 + 20 * len(admitted)
    tokens.flush()
    assert tokens.used(1) == 900 + 20 * len(admitted)


# --- storage unreachable ------------------------------------------------------------------------


def test_fail_open_admits_counts_and_stops_calling_until_a_probe_succeeds():
    storage, clock, errors = BrokenStorage(), Clock(), []
    tokens = budget(storage, clock=clock, errors=errors)
    storage.down = True
    assert take(tokens, 1, tpm=10, estimate=100) is None
    assert len(errors) == 1
    calls = storage.calls
    for _ in range(20):  # within the pause: no storage call at all
        assert take(tokens, 1, tpm=10, estimate=100) is None
        assert tokens.used(1) is None
    assert storage.calls == calls
    clock.now += 1.5
    assert take(tokens, 1, tpm=10, estimate=100) is None  # one probe, still down
    assert storage.calls == calls + 1
    storage.down = False
    clock.now += 1.5
    held = take(tokens, 1, tpm=10, estimate=5)
    assert held is not None and tokens.used(1) == 5
    assert len(errors) == 1


def test_a_call_the_storage_refuses_fails_that_request_only():
    """A script error caused by one request (INCRBY out of range) used to open the gate for
    everyone for a second; now that request gets 503 and the next one is limited as usual."""
    storage, errors = BrokenStorage(), []
    tokens = budget(storage, errors=errors)
    real_incr = storage.incr

    def refuse(key, expiry, amount=1):
        if amount > 10**6:
            raise ResponseError("ERR increment or decrement would overflow")
        return real_incr(key, expiry, amount)

    storage.incr = refuse
    with pytest.raises(ServiceUnavailable):
        take(tokens, 1, rpm=4, tpm=10**9, estimate=10**7)
    assert errors == [] and tokens.guard.available()
    for _ in range(3):
        take(tokens, 1, rpm=4, tpm=10**9, estimate=1)
    with pytest.raises(RateLimitExceeded):  # the refused one was counted: 5 > 4
        take(tokens, 1, rpm=4, tpm=10**9, estimate=1)


@pytest.mark.parametrize("estimate", [2**63 - 1, 10**30])
def test_estimates_are_bounded_before_they_reach_storage(tokens, estimate):
    held = take(tokens, 1, tpm=10, estimate=estimate)
    assert held is not None and held.reserved == MAX_ESTIMATE < 2**63
    with pytest.raises(RateLimitExceeded):
        take(tokens, 1, tpm=10, estimate=1)


def test_fail_closed_refuses_admission_but_never_fails_a_settlement():
    storage, errors = BrokenStorage(), []
    tokens = budget(storage, fail_open=False, errors=errors)
    held = take(tokens, 1, tpm=100, estimate=10)
    storage.down = True
    with pytest.raises(ServiceUnavailable):
        take(tokens, 1, tpm=100, estimate=10)
    tokens.settle(held, 3)
    assert tokens.used(1) is None
    assert len(errors) == 1


def test_queued_settlements_wait_out_an_outage_and_expire_with_their_window():
    storage, clock = BrokenStorage(), Clock()
    tokens = budget(storage, clock=clock)
    tokens.counters.batches_settlements = True  # queue them, as on Redis
    held = take(tokens, 1, tpm=1000, estimate=500)
    storage.down = True
    tokens.settle(held, 40)
    tokens.flush()  # fails: kept
    clock.now += 1.5
    storage.down = False
    tokens.flush()
    assert tokens.used(1) == 40, "written once the storage is back"
    again = take(tokens, 2, tpm=1000, estimate=500)
    storage.down = True
    tokens.settle(again, 40)
    tokens.flush()  # fails: kept, and the outage is remembered
    clock.now += 60  # the window (and its key) ends during the outage
    tokens.flush()  # the probe finds the storage still down
    storage.down, clock.now = False, clock.now + 10  # back, and past the guard's pause
    calls = storage.calls
    tokens.flush()
    assert storage.calls == calls, "a settlement for an ended window is dropped, not kept forever"


# --- through the app ----------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path):
    """An app with a small test tier, its clock frozen 10 s into a 60 s window."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'limits.db'}",
            "PACKET_TIERS": '{"tiny": {"rpm": 3, "tpm": 500}}',
            "PACKET_USAGE_FLUSH_INTERVAL": "0",
        }
    )
    with app.app_context():
        upgrade()
    clock = Clock()
    app.extensions["packet"].limits.clock = clock
    app.clock = clock
    return app


def make_key(app, tier: str, balance: int = 25_000_000) -> str:
    with app.app_context():
        store.create_account(f"acct-{tier}", tier, balance)
        return store.create_key(f"acct-{tier}", "t")[1]


def assert_rate_headers(response):
    missing = [name for name in RATE_HEADERS if name not in response.headers]
    assert not missing, f"{response.status_code} lacks {missing}"


def test_every_request_on_every_route_counts_exactly_once(limited):
    """Proxied routes count where the pipeline admits them, or as they leave when they end
    before (here: no endpoint, bad bodies); the others by their decorator. None counts twice
    and none is missed."""
    key = make_key(limited, "standard")
    client = limited.test_client()
    rules = [r for r in limited.url_map.iter_rules() if r.endpoint.split(".")[0] in ("v1", "vllm")]
    assert len(rules) > 20
    expected = 60
    for rule in rules:
        path = rule.rule.replace("<path:model_id>", "m").replace("<id>", "resp_1")
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        for body in (b"{}", b"not json"):
            response = client.open(
                path,
                method=method,
                data=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            expected -= 1
            assert response.status_code < 500 or response.status_code == 503, path
            remaining = int(response.headers["x-ratelimit-remaining-requests"])
            assert remaining == max(0, expected), f"{method} {path} {response.status_code}"
            if expected <= 1:
                expected = 60
                limited.clock.now += 60  # a fresh window for the next rules


def test_free_tier_allows_20_then_429_with_every_header(limited):
    key = make_key(limited, "free")
    client = limited.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    for i in range(20):
        response = client.get("/v1/models", headers=auth)
        assert response.status_code == 200
        assert_rate_headers(response)
        assert response.headers["X-RateLimit-Remaining"] == str(19 - i)
    response = client.get("/v1/models", headers=auth)
    assert response.status_code == 429
    assert_rate_headers(response)
    error = response.get_json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    assert "requests per minute" in error["message"] and "resets in 50s" in error["message"]
    headers = response.headers
    assert headers["Retry-After"] == "50"
    assert headers["X-RateLimit-Limit"] == headers["x-ratelimit-limit-requests"] == "20"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(1_800_000_060)
    assert headers["x-ratelimit-reset-requests"] == "50s"
    assert headers["x-ratelimit-limit-tokens"] == "40000"
    assert headers["x-ratelimit-remaining-tokens"] == "40000"
    limited.clock.now += 50  # the next window
    assert client.get("/v1/models", headers=auth).status_code == 200


def test_configured_tier_and_errors_carry_headers_and_consume_no_tokens(limited):
    key = make_key(limited, "tiny")
    client = limited.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    responses = [
        client.post("/v1/chat/completions", headers=auth, json={"messages": []}),  # 400
        client.get("/v1/models/nope", headers=auth),  # 404
        client.post(  # 503: no endpoint
            "/v1/chat/completions",
            headers=auth,
            json={"messages": [{"role": "user", "content": "hi"}]},
        ),
        client.get("/v1/models", headers=auth),  # 429: tiny allows 3
    ]
    assert [r.status_code for r in responses] == [400, 404, 503, 429]
    for response in responses:
        assert_rate_headers(response)
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert response.headers["x-ratelimit-limit-tokens"] == "500"
        assert response.headers["x-ratelimit-remaining-tokens"] == "500"
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert client.get("/v1/models").status_code == 401  # no caller, no figures
    assert "X-RateLimit-Limit" not in client.get("/v1/models").headers


def test_anthropic_routes_carry_anthropic_headers_too(limited):
    key = make_key(limited, "tiny")
    client = limited.test_client()
    auth = {"x-api-key": key}
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    responses = [client.post("/v1/messages", headers=auth, json=body) for _ in range(3)]
    assert [r.status_code for r in responses] == [529, 529, 529]  # no endpoint: overloaded
    for response in responses:
        assert_rate_headers(response)
        headers = response.headers
        assert headers["anthropic-ratelimit-requests-limit"] == "3"
        assert headers["anthropic-ratelimit-tokens-limit"] == "500"
        assert headers["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:01:00Z"
    remaining = [r.headers["anthropic-ratelimit-requests-remaining"] for r in responses]
    assert remaining == ["2", "1", "0"]
    assert responses[0].get_json()["error"]["type"] == "overloaded_error"
    other = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert "anthropic-ratelimit-requests-limit" not in other.headers


def test_cli_accepts_any_configured_tier(limited):
    runner = limited.test_cli_runner()
    result = runner.invoke(args=["accounts", "create", "acme", "--tier", "tiny"])
    assert result.exit_code == 0, result.output
    assert "tier tiny" in result.output
    result = runner.invoke(args=["accounts", "create", "other", "--tier", "gold"])
    assert result.exit_code != 0
    assert "unknown tier 'gold'" in result.output


def test_request_headers_come_from_the_count_itself(limited, monkeypatch):
    """One storage call counts the request; only the token figure is read for the headers."""
    storage = limited.extensions["packet"].limits.counters.storage
    calls: list[str] = []
    depth = 0

    def counted(name):
        method = getattr(storage, name)

        def call(*args, **kwargs):
            nonlocal depth
            if not depth:  # the storage's own nested calls are not round trips
                calls.append(name)
            depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                depth -= 1

        return call

    for name in ("incr", "get"):
        monkeypatch.setattr(storage, name, counted(name))
    key = make_key(limited, "tiny")
    response = limited.test_client().get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert calls == ["incr", "get"]


def test_flask_limiter_adds_no_request_hooks(limited):
    """Its hooks would apply no limit (packet.limits counts requests) but cost per request."""
    hooks = [
        *limited.before_request_funcs.get(None, []),
        *limited.after_request_funcs.get(None, []),
        *limited.teardown_request_funcs.get(None, []),
    ]
    modules = {getattr(getattr(hook, "func", hook), "__module__", "") for hook in hooks}
    assert not any(module.startswith("flask_limiter") for module in modules), modules


# --- a key's own controls, in the same admission --------------------------------------------


def admit_key(
    limits, account, controls, *, key_id=1, rpm=1_000, tpm=1_000_000, estimate=10, hold=0
):
    """Admit like a completion with a controlled key: the reservation, or the error raised."""
    reservation = limits.admit(
        account, rpm=rpm, tpm=tpm, estimate=estimate, key=KeyLimit(key_id, controls, hold)
    )
    if reservation is not None and not reservation.admitted:
        raise limits.refusal(reservation, rpm, tpm, controls)
    return reservation


def test_a_key_rpm_refuses_that_key_while_the_account_goes_on(tokens):
    controls = KeyControls(rpm=3)
    for _ in range(3):
        admit_key(tokens, 7, controls, key_id=1, rpm=5)
    with pytest.raises(RateLimitExceeded, match="per minute on this API key: limit 3") as refused:
        admit_key(tokens, 7, controls, key_id=1, rpm=5)
    assert refused.value.type == "requests" and "Retry-After" in refused.value.headers
    other = admit_key(tokens, 7, KeyControls(rpm=3), key_id=2, rpm=5)
    assert other.admitted and other.requests == 5, "the account counted every request"
    with pytest.raises(RateLimitExceeded, match="per minute on your account: limit 5"):
        admit_key(tokens, 7, KeyControls(rpm=3), key_id=3, rpm=5)


def test_a_key_tpm_is_its_own_and_settles_to_the_real_usage(tokens):
    controls = KeyControls(tpm=100)
    first = admit_key(tokens, 8, controls, estimate=80)
    assert (first.key_tokens, first.counter) == (80, 80)
    tokens.settle(first, 120)
    tokens.flush()
    with pytest.raises(RateLimitExceeded, match="tokens per minute on this API key: limit 100"):
        admit_key(tokens, 8, controls, estimate=1)
    fresh = admit_key(tokens, 8, KeyControls(tpm=100), key_id=2, estimate=5)
    assert fresh.key_tokens == 5 and fresh.counter == 125, "the account's window has them all"


def test_a_budget_holds_the_most_a_request_can_cost_and_settles_to_its_cost(tokens):
    controls = KeyControls(budget_micros=1_000)
    held = [admit_key(tokens, 9, controls, hold=400) for _ in range(3)]  # 1,200 held ≥ budget
    assert [r.spent for r in held] == [400, 800, 1_200]
    with pytest.raises(InsufficientQuota, match=r"budget of \$0.00"):
        admit_key(tokens, 9, controls, hold=400)
    for reservation in held:
        tokens.settle(reservation, 10, cost=100)  # each really cost 100
    tokens.flush()
    again = admit_key(tokens, 9, controls, hold=400)
    assert again.spent == 300 + 400, "settled spend plus the new hold"


def test_a_budget_counter_starts_from_what_the_database_says_was_spent(tokens):
    controls = KeyControls(budget_micros=1_000, spent_micros=990, spent_period=None)
    # The spend recorded is from another period: this one starts from zero.
    assert admit_key(tokens, 10, controls, key_id=4, hold=5).spent == 5
    this_month = period_of("month", tokens.clock())
    seeded = KeyControls(budget_micros=1_000, spent_micros=1_000, spent_period=this_month)
    with pytest.raises(InsufficientQuota):
        admit_key(tokens, 10, seeded, key_id=5, hold=5)


def test_a_key_count_without_tokens_checks_its_rpm_only(tokens):
    controls = KeyControls(rpm=1, tpm=1, budget_micros=0)
    counted = admit_key(tokens, 11, controls, estimate=None)
    assert counted.admitted and counted.spend_key is None and counted.settled
    with pytest.raises(RateLimitExceeded, match="requests per minute on this API key"):
        admit_key(tokens, 11, controls, estimate=None)
