"""Keys with their own controls against the real gateway (gunicorn + gevent) and the simulated
vLLM, with the openai SDK: a key's rpm, its budget, its allowed models, its expiry; its spend
exact under concurrency on PostgreSQL; its limits shared by two gateways on one Redis."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import openai
import pytest
from helpers import BULK, LONG, PRICES, chat, fresh_window, get, wait_rows
from processes import REDIS_URL, needs_redis

from packet import store
from packet.devserver import DEFAULT_MODEL
from packet.reports import key_view

pytestmark = pytest.mark.live

# One request's most: the prompt estimate (body bytes / 4 + 1) at $100/M plus 8 tokens at
# $300/M — about 3,500 micro-dollars for the bodies here.
MAX_TOKENS = 8
ONE_REQUEST_MOST = 4_000


@pytest.fixture(scope="module")
def gateway(module_launcher, _databases, module_sim):
    return module_launcher.gateway(
        _databases["sqlite"],
        upstreams=[module_sim.url],
        PACKET_LIMIT_WINDOW_SECONDS=str(LONG),
        **PRICES,
        **BULK,
    )


def controlled(database, name: str, **controls) -> str:
    """A new key of ``name`` with ``controls`` (column names), returned in full."""
    _, key = database.run(store.create_key, name, "controlled", controls)
    return key


def ask(client: openai.OpenAI, model: str = "auto"):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=MAX_TOKENS
    )


def test_a_key_rpm_refuses_its_fourth_request_while_another_key_goes_on(gateway, _databases):
    database = _databases["sqlite"]
    name, plain = database.account(tier="bulk")
    limited = controlled(database, name, rpm=3)
    fresh_window(LONG, 30)
    left = []
    for _ in range(3):
        response = chat(gateway, limited)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "3", "the key's is tighter"
        left.append(response.headers["x-ratelimit-remaining-requests"])
    assert left == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as refused:
        ask(gateway.client(limited))
    assert "on this API key: limit 3" in refused.value.message
    assert refused.value.response.headers["retry-after"]
    for _ in range(5):
        response = chat(gateway, plain)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "1000000", "the account's"


def test_a_budget_stops_the_key_at_it_while_the_account_goes_on(gateway, _databases):
    database = _databases["sqlite"]
    name, plain = database.account(tier="bulk", balance_micros=10_000_000)
    budgeted = controlled(database, name, budget_micros=10_000)  # $0.01 a month
    client = gateway.client(budgeted)
    answered = 0
    with pytest.raises(openai.PermissionDeniedError) as refused:
        for _ in range(20):
            ask(client)
            answered += 1
    assert 2 <= answered < 20
    assert refused.value.code == "insufficient_quota"
    assert "budget of $0.01 this month" in refused.value.message
    assert chat(gateway, plain).status_code == 200, "the account's other keys go on"

    rows = wait_rows(database, name, answered + 1)
    key_id = database.run(store.find_live_key, budgeted).id
    spent = sum(r.cost_micros for r in rows if r.key_id == key_id)
    # Refused once spent and held reach the budget: a hold not yet settled may stand for a
    # request that cost less, so the spend ends within one request of the budget either way.
    assert 10_000 - ONE_REQUEST_MOST <= spent <= 10_000 + ONE_REQUEST_MOST
    deadline = time.monotonic() + 5
    while database.run(lambda: key_view(store.get_key(key_id)))["spent_micros"] != spent:
        assert time.monotonic() < deadline, "the key's recorded spend equals its rows' cost"
        time.sleep(0.05)


def test_a_model_outside_the_allow_list_is_403_and_hidden(gateway, _databases):
    database = _databases["sqlite"]
    name, _ = database.account(tier="bulk")
    elsewhere = controlled(database, name, models=["some-other-model"])
    allowed = controlled(database, name, models=[DEFAULT_MODEL, "some-other-model"])

    client = gateway.client(elsewhere)
    for model in ("auto", DEFAULT_MODEL):  # what auto resolves to is checked too
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(client, model)
        assert refused.value.code == "model_not_allowed"
        assert "some-other-model" in refused.value.message
    assert client.models.list().data == []
    assert get(gateway, elsewhere, f"/v1/models/{DEFAULT_MODEL}").status_code == 404

    client = gateway.client(allowed)
    assert ask(client).model == DEFAULT_MODEL
    assert [m.id for m in client.models.list().data] == [DEFAULT_MODEL]


def test_an_expired_key_is_401(gateway, _databases):
    database = _databases["sqlite"]
    name, _ = database.account(tier="bulk")
    expired = controlled(database, name, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    valid = controlled(database, name, expires_at=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(openai.AuthenticationError) as refused:
        ask(gateway.client(expired))
    assert refused.value.code == "invalid_api_key" and "expired" in refused.value.message
    assert ask(gateway.client(valid)).choices


def test_fifty_concurrent_requests_on_a_budgeted_key_leave_its_spend_exact(
    launcher, postgres_database, module_sim
):
    gateway = launcher.gateway(postgres_database, upstreams=[module_sim.url], **PRICES, **BULK)
    name, _ = postgres_database.account(tier="bulk", balance_micros=10_000_000)
    budget = 50_000  # about fifteen requests' worth
    key = controlled(postgres_database, name, budget_micros=budget, budget_period="total")
    with ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(lambda _: chat(gateway, key, max_tokens=MAX_TOKENS).status_code, range(50))
        )
    assert set(statuses) <= {200, 403} and statuses.count(200) >= 10
    rows = wait_rows(postgres_database, name, statuses.count(200))
    assert len(rows) == statuses.count(200)
    spent = sum(r.cost_micros for r in rows)
    key_id = rows[0].key_id
    deadline = time.monotonic() + 5
    while postgres_database.run(lambda: store.get_key(key_id).spent_micros) != spent:
        assert time.monotonic() < deadline, "the recorded spend equals the rows' cost, exactly"
        time.sleep(0.05)
    # In-memory limits count per process (several workers or gateways share a budget through
    # Redis: the test below).
    assert spent <= budget + ONE_REQUEST_MOST


@needs_redis
def test_two_gateways_on_one_redis_share_a_key_limits_exactly(
    launcher, sqlite_database, module_sim
):
    shared = {
        "REDIS_URL": REDIS_URL,
        "PACKET_LIMIT_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "PACKET_LIMIT_WINDOW_SECONDS": str(LONG),
        **PRICES,
        **BULK,
    }
    gateways = [launcher.gateway(sqlite_database, [module_sim.url], **shared) for _ in range(2)]
    name, _ = sqlite_database.account(tier="bulk", balance_micros=10_000_000)
    key = controlled(sqlite_database, name, rpm=5)
    fresh_window(LONG, 30)
    statuses = [chat(gateways[i % 2], key).status_code for i in range(8)]
    assert statuses == [200] * 5 + [429] * 3

    budgeted = controlled(sqlite_database, name, budget_micros=20_000)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: chat(gateways[i % 2], budgeted, max_tokens=MAX_TOKENS), range(24))
        )
    admitted = [a for a in answers if a.status_code == 200]
    assert {a.status_code for a in answers} == {200, 403}
    budget_id = sqlite_database.run(store.find_live_key, budgeted).id
    rows = [r for r in wait_rows(sqlite_database, name, 5 + len(admitted)) if r.key_id == budget_id]
    assert len(rows) == len(admitted)
    assert sum(r.cost_micros for r in rows) <= 20_000 + ONE_REQUEST_MOST, (
        "one budget counter for both gateways: together they stop at it"
    )
