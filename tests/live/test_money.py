"""The money path trusts nothing: hostile request ids, bodies and upstream usage reports, with
the real gateway (gunicorn + gevent), the simulated vLLM and prices set. Each test checks the
usage rows and the balance equation: final balance = initial − Σ recorded cost."""

from __future__ import annotations

import time

import pytest
import requests
from helpers import BULK, PRICES, balance, call, charge, settled_balance, wait_rows

pytestmark = pytest.mark.live

CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "four words of prompt"}]


def test_an_overlong_request_id_poisons_nothing(launcher, database):
    """Critical 1: a 65–128 character id passed the check, then failed every flush after it."""
    sim = launcher.sim()
    gateway = launcher.gateway(database, upstreams=[sim.url], **PRICES, **BULK)
    initial = 10_000_000
    name, key = database.account(tier="bulk", balance_micros=initial)
    long_id = "x" * 100
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": long_id}
    first = requests.post(
        f"{gateway.url}{CHAT}", json={"messages": MSGS}, headers=headers, timeout=10
    )
    assert first.status_code == 200
    assert first.headers["X-Request-ID"] != long_id  # replaced, never stored cut
    others = [call(gateway, key, CHAT, {"messages": MSGS, "max_tokens": 3}) for _ in range(20)]
    assert [r["status"] for r in others] == [200] * 20
    rows = wait_rows(database, name, 21)
    assert len(rows) == 21 and {r["id"] for r in others} <= {r.request_id for r in rows}
    settled_balance(database, name, initial, rows)


@pytest.mark.parametrize(
    ("reported", "expected_prompt"),
    [
        ({"prompt_tokens": -1_000_000_000, "completion_tokens": -5, "total_tokens": 0}, None),
        ({"prompt_tokens": "abc", "completion_tokens": 3, "total_tokens": 3}, None),
        ({"prompt_tokens": -(2**40), "completion_tokens": 2**62, "total_tokens": 1}, None),
        ("not an object", None),
    ],
)
def test_implausible_upstream_usage_is_counted_never_credited(
    launcher, sqlite_database, reported, expected_prompt
):
    """Critical 2 and high 4: negative, huge or non-integer usage from an upstream (which the
    account owner controls) neither credits the balance nor breaks the request."""
    sim = launcher.sim()
    gateway = launcher.gateway(sqlite_database, upstreams=[sim.url], **PRICES, **BULK)
    initial = 1_000_000
    name, key = sqlite_database.account(tier="bulk", balance_micros=initial)
    plain = call(gateway, key, CHAT, {"messages": MSGS, "max_tokens": 8, "x_sim_usage": reported})
    streamed = call(
        gateway,
        key,
        CHAT,
        {
            "messages": MSGS,
            "max_tokens": 8,
            "stream": True,
            "stream_options": {"include_usage": True},
            "x_sim_usage": reported,
        },
    )
    assert (plain["status"], streamed["status"]) == (200, 200)
    assert streamed["events"][-1] == b"[DONE]"
    rows = {r.request_id: r for r in wait_rows(sqlite_database, name, 2)}
    for result in (plain, streamed):
        row = rows[result["id"]]
        assert row.usage_source == "counted"
        assert 0 < row.prompt_tokens < 100 and 0 < row.completion_tokens <= 8
        assert row.cost_micros == charge(row.prompt_tokens, row.completion_tokens) > 0
    assert rows[streamed["id"]].completion_tokens == 8  # one per relayed delta
    settled_balance(sqlite_database, name, initial, list(rows.values()))
    assert balance(sqlite_database, name) < initial
    health = requests.get(
        f"{gateway.url}/health", headers={"Authorization": f"Bearer {key}"}, timeout=5
    ).json()
    assert [e["inflight"] for e in health["endpoints"]] == [0]  # the endpoint was released


def test_plausible_upstream_usage_is_believed(launcher, sqlite_database):
    sim = launcher.sim()
    gateway = launcher.gateway(sqlite_database, upstreams=[sim.url], **PRICES, **BULK)
    name, key = sqlite_database.account(tier="bulk")
    result = call(gateway, key, CHAT, {"messages": MSGS, "max_tokens": 5})
    (row,) = wait_rows(sqlite_database, name, 1)
    truth = sim.request(result["id"])
    assert row.usage_source == "upstream"
    assert (row.prompt_tokens, row.completion_tokens) == (
        truth["prompt_tokens"],
        truth["completion_tokens"],
    )


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/v1/completions", "max_completion_tokens", -1_000_000_000),
        ("/v1/completions", "max_completion_tokens", 2.5),
        ("/v1/completions", "max_tokens", 2**63 - 1),
        (CHAT, "max_tokens", 1e30),
        (CHAT, "max_tokens", 4.7e18),
        (CHAT, "max_completion_tokens", 10**12),
        (CHAT, "best_of", 10**6),
        (CHAT, "best_of", 1.5),
        (CHAT, "seed", 2**64),
    ],
)
def test_absurd_numbers_are_400_naming_the_param(launcher, sqlite_database, path, field, value):
    """High 3, medium 6, item 7: numbers are bounded before they reach storage or a hold."""
    sim = launcher.sim()
    gateway = launcher.gateway(sqlite_database, upstreams=[sim.url], **PRICES)
    _, key = sqlite_database.account()
    body = {"messages": MSGS} if path == CHAT else {"prompt": "hi"}
    response = requests.post(
        f"{gateway.url}{path}",
        json=body | {field: value},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", field)
    assert sim.requests() == []


def test_json_nested_too_deep_to_forward_is_400(launcher, sqlite_database):
    sim = launcher.sim()
    gateway = launcher.gateway(sqlite_database, upstreams=[sim.url])
    _, key = sqlite_database.account()
    for depth in (256, 600, 1023):
        raw = b'{"messages": [{"role": "user", "content": "x"}], "x": ' + b"[" * depth
        raw += b"]" * depth + b"}"
        response = requests.post(
            f"{gateway.url}{CHAT}",
            data=raw,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 400, (depth, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    health = requests.get(
        f"{gateway.url}/health", headers={"Authorization": f"Bearer {key}"}, timeout=5
    ).json()
    assert [e["inflight"] for e in health["endpoints"]] == [0]


def test_a_huge_max_tokens_holds_no_more_than_the_context(launcher, sqlite_database):
    """Medium 6: the hold is capped at the model's context length, so one request asking for
    2³¹ tokens does not lock the account out of its next requests until a flush."""
    sim = launcher.sim("--max-model-len", "4096")
    gateway = launcher.gateway(
        sqlite_database,
        upstreams=[sim.url],
        PACKET_BALANCE_LEASE="1",  # every hold is an exact UPDATE, visible in the database
        PACKET_USAGE_FLUSH_INTERVAL="3600",  # and stays there: settlements wait for a flush
        **PRICES,
        **BULK,
    )
    initial = 2_000_000  # more than one hold of a whole 4096-token context at $300/M
    name, key = sqlite_database.account(tier="bulk", balance_micros=initial)
    greedy = call(gateway, key, CHAT, {"messages": MSGS, "max_tokens": 2**31 - 1})
    assert greedy["status"] == 400  # the model's context length, said by the upstream
    held = initial - balance(sqlite_database, name)
    assert 0 < held <= charge(100, 4096)
    assert call(gateway, key, CHAT, {"messages": MSGS, "max_tokens": 5})["status"] == 200


def test_an_upstream_that_breaks_the_connection_is_502_and_stays_in_rotation(
    launcher, sqlite_database
):
    """Item 10: garbage or an immediate close is a 502 upstream_error, not 'no endpoint'."""
    sim = launcher.sim()
    gateway = launcher.gateway(sqlite_database, upstreams=[sim.url], **PRICES, **BULK)
    initial = 100_000_000
    name, key = sqlite_database.account(tier="bulk", balance_micros=initial)
    for how in ("close", "garbage"):
        for stream in (False, True):
            result = call(
                gateway, key, CHAT, {"messages": MSGS, "stream": stream, "x_sim_break": how}
            )
            assert result["status"] == 502, (how, stream)
            assert result["body"].json()["error"]["code"] == "upstream_error"
    fine = call(gateway, key, CHAT, {"messages": MSGS})
    assert fine["status"] == 200  # not cooled off
    rows = wait_rows(sqlite_database, name, 5)
    assert sorted(r.status for r in rows) == [200, 502, 502, 502, 502]
    settled_balance(sqlite_database, name, initial, rows)


def test_a_hung_upstream_is_bounded(launcher, sqlite_database):
    """Item 11: a non-streamed answer that never comes is a 504 after PACKET_READ_TIMEOUT; a
    stream that goes silent ends with an upstream_timeout event after the idle bound."""
    sim = launcher.sim()
    gateway = launcher.gateway(
        sqlite_database,
        upstreams=[sim.url],
        PACKET_READ_TIMEOUT="1",
        PACKET_STREAM_FIRST_BYTE_TIMEOUT="1.5",
        PACKET_STREAM_IDLE_TIMEOUT="1",
        PACKET_KEEPALIVE_INTERVAL="0.3",
        **PRICES,
        **BULK,
    )
    initial = 100_000_000
    name, key = sqlite_database.account(tier="bulk", balance_micros=initial)
    started = time.monotonic()
    hung = call(gateway, key, CHAT, {"messages": MSGS, "x_sim_first_token_delay": 30})
    assert hung["status"] == 504 and time.monotonic() - started < 10
    assert hung["body"].json()["error"]["code"] == "upstream_timeout"
    for knob in ({"x_sim_stall_after": 3}, {"x_sim_first_token_delay": 30}):
        started = time.monotonic()
        stalled = call(gateway, key, CHAT, {"messages": MSGS, "stream": True, **knob})
        assert stalled["status"] == 200 and time.monotonic() - started < 10
        assert b"upstream_timeout" in stalled["events"][-2] and stalled["events"][-1] == b"[DONE]"
    rows = {r.request_id: r for r in wait_rows(sqlite_database, name, 3)}
    assert rows[stalled["id"]].status == 502
    settled_balance(sqlite_database, name, initial, list(rows.values()))
