"""Property: whatever happens to the requests, money is conserved and no hold outlives its
request.

Hypothesis draws a sequence of admissions (each with a prompt estimate and a max_tokens),
finishes (with any usage the upstream may report, checked as the gateway checks it), failures,
client disconnects (some tokens sent), flushes, and a database that refuses a flush. After every
step the books in the database balance: initial = balance + Σ leased + Σ cost; once every
request has finished and been flushed nothing is leased; after close, balance = initial − Σ cost,
and the balance never went below −(one request's maximum cost).

Prompts stay within their estimate here: a prompt longer than body bytes / 4 can cost more than
its hold (README, "Pricing, balance and usage"), which conservation does not depend on.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from packet import store, usage
from packet.auth import Principal
from packet.config import load_settings
from packet.errors import InsufficientQuota
from packet.extensions import db
from packet.metering import Meter
from packet.models import Account, UsageRecord, WorkerLease
from packet.money import cost_micros

CONTEXT = 4096
PRICED = {"PACKET_PRICE_INPUT": "100", "PACKET_PRICE_OUTPUT": "300"}

ADMIT = st.tuples(
    st.just("admit"), st.integers(min_value=1, max_value=3000), st.integers(1, CONTEXT)
)
FINISH = st.tuples(
    st.just("finish"),
    st.integers(min_value=0, max_value=50),
    st.one_of(
        st.integers(min_value=-(2**40), max_value=2**40),
        st.none(),
        st.text(max_size=3),
    ),
)
OPS = st.lists(
    st.one_of(
        ADMIT,
        ADMIT,
        FINISH,
        st.tuples(st.just("fail"), st.integers(0, 50)),
        st.tuples(st.just("disconnect"), st.integers(0, 50), st.integers(0, CONTEXT)),
        st.tuples(st.just("flush")),
        st.tuples(st.just("outage")),
    ),
    max_size=40,
)


def _books(database, account_id: int) -> tuple[int, int, int]:
    """(balance, leased by any worker, Σ cost of the rows) as the database has them."""
    with database.app.app_context():
        balance = db.session.get(Account, account_id).balance_micros
        leased = db.session.scalar(
            select(func.coalesce(func.sum(WorkerLease.amount_micros), 0)).where(
                WorkerLease.account_id == account_id
            )
        )
        spent = db.session.scalar(
            select(func.coalesce(func.sum(UsageRecord.cost_micros), 0)).where(
                UsageRecord.account_id == account_id
            )
        )
        return balance, leased, spent


def _row(principal: Principal, n: int, prompt: int, completion: int, cost: int) -> dict:
    return {
        "request_id": f"prop-{principal.account_id}-{n}",
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


@pytest.fixture(scope="module")
def meter_settings():
    base = load_settings({"DATABASE_URL": "sqlite://", **PRICED}, instance_path="/tmp")
    return replace(base, usage_flush_interval=60)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, balance=st.integers(min_value=0, max_value=5_000_000))
def test_money_is_conserved_and_no_hold_outlives_its_request(
    database, meter_settings, monkeypatch, ops, balance
):
    name, _ = database.account(balance_micros=balance)
    with database.app.app_context():
        account = store.get_account(name)
        key = store.list_keys(name)[0]
    meter = Meter(database.app, meter_settings, touched_keys=dict)
    open_calls: list[tuple[int, object, object, int, int]] = []  # (n, hold, call, prompt, max)
    lowest, biggest_hold, n = balance, 0, 0

    def principal() -> Principal:
        current = database.run(store.get_account, name).balance_micros
        return Principal(key.id, key.prefix, account.id, name, "standard", current, None, ())

    def finish(i: int, prompt: int, completion: int, *, checked: bool = True) -> None:
        number, hold, call, estimate, max_tokens = open_calls.pop(i % len(open_calls))
        prompt = min(prompt, estimate)
        if checked:  # the upstream's word, bounded as the gateway bounds it
            report = {"prompt_tokens": prompt, "completion_tokens": completion}
            used = usage.checked(
                report,
                usage.Bounds(estimate, max_tokens),
                counted_prompt=estimate,
                counted_completion=0,
                floor=0,
            )
            prompt, completion = used.prompt, used.completion
        cost = cost_micros(meter_settings, "m", prompt, completion)
        meter.record(_row(principal(), number, prompt, completion, cost), hold, call)

    def conserved() -> None:
        nonlocal lowest
        current, leased, spent = _books(database, account.id)
        assert current + leased + spent == balance, (current, leased, spent)
        lowest = min(lowest, current)

    for op in ops:
        kind = op[0]
        if kind == "admit":
            _, estimate, max_tokens = op
            try:
                hold = database.run(meter.reserve, principal(), "m", estimate, max_tokens)
            except InsufficientQuota:
                continue
            n += 1
            biggest_hold = max(biggest_hold, hold.amount)
            call = meter.begin({"request_id": f"prop-{n}"}, hold)
            open_calls.append((n, hold, call, estimate, max_tokens))
        elif kind == "finish" and open_calls:
            finish(op[1], op[1] * 7, op[2] if isinstance(op[2], int) else 0)
        elif kind == "fail" and open_calls:
            finish(op[1], 0, 0, checked=False)
        elif kind == "disconnect" and open_calls:
            max_tokens = open_calls[op[1] % len(open_calls)][4]
            finish(op[1], 10, min(op[2], max_tokens), checked=False)
        elif kind == "flush":
            meter.flush()
        elif kind == "outage":
            with monkeypatch.context() as patched:
                patched.setattr(store, "write_usage", _down)
                meter.flush()
        conserved()

    while open_calls:
        finish(0, 0, 0, checked=False)
    meter.flush()
    conserved()
    assert _books(database, account.id)[1] == 0, "a hold outlived its request"
    meter.close()
    current, leased, spent = _books(database, account.id)
    assert leased == 0 and current == balance - spent
    assert lowest >= -biggest_hold, "the balance went below one request's maximum cost"


def _down(batch) -> None:
    from sqlalchemy.exc import OperationalError

    raise OperationalError("flush", {}, Exception("connection refused"))
