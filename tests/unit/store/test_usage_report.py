"""The usage report: whole days from the daily roll-up, the partial days at its ends from the
rows, and together exactly what summing the rows gives, for any range (SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from packet import store

START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def recorded(database):
    """An account with two keys and rows spread over five days, at odd times, some cached."""
    name = f"report-{uuid.uuid4().hex[:8]}"
    database.run(store.create_account, name, "standard", 10**9)
    keys = [database.run(lambda: store.create_key(name)[0].id) for _ in range(2)]
    account = database.run(store.get_account, name).id
    rows = []
    for i in range(120):
        at = START + timedelta(hours=i, minutes=(i * 37) % 60, seconds=i % 7)
        rows.append(
            {
                "request_id": f"r{i}",
                "account_id": account,
                "key_id": keys[i % 2] if i % 5 else None,
                "endpoint_url": None,
                "model": ("a", "b", None)[i % 3],
                "route": "chat.completions",
                "stream": False,
                "status": 200,
                "prompt_tokens": i,
                "completion_tokens": 2 * i,
                "total_tokens": 3 * i,
                "cost_micros": 7 * i,
                "ttft_ms": None,
                "latency_ms": 1,
                "client_disconnected": False,
                "usage_source": "cache" if i % 11 == 0 else "upstream",
                "cached": i % 11 == 0,
                "saved_tokens": 5 if i % 11 == 0 else 0,
                "created_at": at,
            }
        )
    database.run(store.write_usage, store.Batch(records=rows))
    return name, rows


def summed(rows, since, until, model=None, key_id=None):
    """The report the slow way: every row in range, summed per (model, key)."""
    totals = {}
    for r in rows:
        if since is not None and r["created_at"] < since:
            continue
        if until is not None and r["created_at"] >= until:
            continue
        if (model is not None and r["model"] != model) or (
            key_id is not None and r["key_id"] != key_id
        ):
            continue
        found = totals.setdefault((r["model"], r["key_id"]), [0] * 7)
        values = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_micros")
        found[0] += 1
        for i, name in enumerate(values, 1):
            found[i] += r[name]
        found[5] += 1 if r["cached"] else 0
        found[6] += r["saved_tokens"]
    return totals


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (None, None),
        (START, START + timedelta(days=3)),  # whole days only
        (START + timedelta(hours=5, minutes=3), START + timedelta(days=3, hours=7)),  # two edges
        (START + timedelta(hours=1), START + timedelta(hours=20)),  # inside one day
        (START + timedelta(days=1), START + timedelta(days=1)),  # empty
        (None, START + timedelta(days=2, minutes=1)),
        (START + timedelta(days=1, seconds=1), None),
        (START - timedelta(days=3), START + timedelta(days=30)),
    ],
)
def test_the_report_equals_the_rows_summed(database, recorded, since, until):
    name, rows = recorded
    report = database.run(store.usage_rows, name, since=since, until=until)
    got = {(r.model, r.key_id): list(r[3:]) for r in report}
    assert got == summed(rows, since, until)
    assert all(r.key_prefix for r in report if r.key_id is not None)


def test_the_report_filters_by_model_and_key(database, recorded):
    name, rows = recorded
    since, until = START + timedelta(hours=13), START + timedelta(days=4, hours=2)
    key_id = next(r["key_id"] for r in rows if r["key_id"])
    for model, key in (("a", None), (None, key_id), ("b", key_id)):
        report = database.run(store.usage_rows, name, since, until, model, key)
        got = {(r.model, r.key_id): list(r[3:]) for r in report}
        assert got == summed(rows, since, until, model, key)
