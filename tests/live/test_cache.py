"""The response cache with the real gateway (gunicorn + gevent) and the simulated vLLM, driven
by the openai SDK: what reaches the upstream is counted from the simulator's own records."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import PRICES, balance, charge, row_of, until
from processes import REDIS_URL, needs_redis

from packet import store

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"
USE = {"X-Packet-Cache": "use"}
TIERS = '{"bulk": {"rpm": 100000, "tpm": 100000000}, "tiny": {"rpm": 1000, "tpm": 60}}'


@pytest.fixture(scope="module")
def live_env() -> dict[str, str]:
    return PRICES | {"PACKET_TIERS": TIERS, "PACKET_AUTH_CACHE_TTL": "0.5"}


@pytest.fixture(scope="module")
def live_database(database):
    return database  # SQLite and, when available, PostgreSQL


@pytest.fixture
def account(live):
    return live.database.account(tier="bulk")


def marker() -> str:
    return f"cache test {uuid.uuid4().hex}"


def seen(sim, text: str) -> int:
    """How many requests carrying ``text`` reached the simulator."""
    return sum(text in json.dumps(r["body"]) for r in sim.requests())


def rid() -> str:
    return f"t-{uuid.uuid4().hex}"


def chat(gateway, key, text, *, headers=None, **body):
    """A chat completion with its own request id, as raw HTTP (headers readable)."""
    request_id = rid()
    payload = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    response = requests.post(
        f"{gateway.url}/v1/chat/completions",
        json=payload | body,
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id} | (headers or {}),
        timeout=30,
    )
    response.request_id = request_id
    return response


def sse(response) -> list[dict]:
    """The data events of an SSE body, parsed ([DONE] as the string)."""
    events = []
    for line in response.text.split("\n"):
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def without_ids(events: list) -> list:
    return [
        e if isinstance(e, str) else {k: v for k, v in e.items() if k not in ("id", "created")}
        for e in events
    ]


def test_miss_then_hit_with_the_sdk_auto_and_the_model_id_share_it(live, account):
    name, key = account
    client = live.gateway.client(key)
    text = marker()
    messages = [{"role": "user", "content": text}]
    first = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, max_tokens=6, extra_headers=USE
    )
    second = client.chat.completions.with_raw_response.create(
        model=SIM_MODEL,
        messages=messages,
        max_tokens=6,
        extra_headers=USE | {"X-Request-ID": rid()},
    )
    assert first.headers["X-Packet-Cache"] == "miss" and "Age" not in first.headers
    assert second.headers["X-Packet-Cache"] == "hit" and int(second.headers["Age"]) >= 0
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.usage == a.usage and b.model == SIM_MODEL and b.id != a.id
    assert seen(live.sim, text) == 1

    hit = row_of(live.database, name, second.headers["X-Request-ID"])
    miss = row_of(live.database, name, first.headers["X-Request-ID"])
    assert (hit.cached, hit.prompt_tokens, hit.completion_tokens, hit.cost_micros) == (
        True,
        0,
        0,
        0,
    )
    assert hit.saved_tokens == miss.total_tokens > 0 and not miss.cached
    lines = live.gateway.output().splitlines()
    assert any(f"request_id={hit.request_id} " in line and " cache=hit " in line for line in lines)
    assert any(
        f"request_id={miss.request_id} " in line and " cache=miss " in line for line in lines
    )
    assert miss.cost_micros == charge(miss.prompt_tokens, miss.completion_tokens)
    until(lambda: balance(live.database, name) == 25_000_000 - miss.cost_micros, "settled")

    report = live.database.run(__import__("packet.reports").reports.account_usage, name)
    assert report["total"]["cache_hits"] == 1
    assert report["total"]["saved_tokens"] == miss.total_tokens


def test_stream_stored_then_replayed_as_a_stream_and_as_json(live, account):
    _, key = account
    gateway, text = live.gateway, marker()
    asked = {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": 7}
    first = chat(gateway, key, text, headers=USE, **asked)
    replay = chat(gateway, key, text, headers=USE, **asked)
    assert (first.headers["X-Packet-Cache"], replay.headers["X-Packet-Cache"]) == ("miss", "hit")
    assert replay.headers["Content-Type"].startswith("text/event-stream")
    original, replayed = sse(first), sse(replay)
    assert without_ids(replayed) == without_ids(original)
    assert replayed[-1] == "[DONE]" and replayed[-2]["choices"] == []  # the usage chunk, asked
    assert replayed[0]["id"] != original[0]["id"]
    assert len({e["id"] for e in replayed[:-1]}) == 1

    bare = sse(chat(gateway, key, text, headers=USE, stream=True, max_tokens=7))
    assert all(e["choices"] for e in bare[:-1]) and "usage" not in bare[0]
    as_json = chat(gateway, key, text, headers=USE, max_tokens=7)
    assert as_json.headers["X-Packet-Cache"] == "hit"
    answer = as_json.json()
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in original[:-2])
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": streamed}
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"] == original[-2]["usage"]
    assert seen(live.sim, text) == 1

    # The other way round: a JSON answer replayed as a stream.
    other = marker()
    stored = chat(gateway, key, other, headers=USE).json()
    events = sse(chat(gateway, key, other, headers=USE, stream=True))
    deltas = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert deltas == stored["choices"][0]["message"]["content"] and events[-1] == "[DONE]"
    assert events[0]["object"] == "chat.completion.chunk"
    assert seen(live.sim, other) == 1


def test_completions_and_embeddings_hit(live, account):
    _, key = account
    client = live.gateway.client(key)
    text = marker()
    first = client.completions.create(model="auto", prompt=text, max_tokens=4, extra_headers=USE)
    chunks = list(
        client.completions.create(
            model="auto", prompt=text, max_tokens=4, stream=True, extra_headers=USE
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == first.choices[0].text
    vectors = [
        client.embeddings.create(model="auto", input=[text, "second"], extra_headers=USE)
        for _ in range(2)
    ]
    assert vectors[0].data[0].embedding == vectors[1].data[0].embedding
    assert seen(live.sim, text) == 2  # one completion, one embedding


def test_responses_without_store_hit_and_a_stream_answers_json(live, account):
    _, key = account
    client = live.gateway.client(key)
    text = marker()
    with client.responses.stream(
        model="auto", input=text, store=False, max_output_tokens=5, extra_headers=USE
    ) as stream:
        streamed = stream.get_final_response()
    again = client.responses.create(
        model="auto", input=text, store=False, max_output_tokens=5, extra_headers=USE
    )
    assert again.output_text == streamed.output_text and again.id != streamed.id
    with client.responses.stream(
        model="auto", input=text, store=False, max_output_tokens=5, extra_headers=USE
    ) as stream:
        kinds = [event.type for event in stream]
        replayed = stream.get_final_response()
    assert replayed.output_text == streamed.output_text and replayed.id != streamed.id
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert seen(live.sim, text) == 1
    stored = marker()  # store true (the default): never cached
    for _ in range(2):
        client.responses.create(model="auto", input=stored, max_output_tokens=3, extra_headers=USE)
    assert seen(live.sim, stored) == 2


def test_failed_or_disconnected_streams_are_not_stored(live, account):
    _, key = account
    gateway, text = live.gateway, marker()
    failed = chat(gateway, key, text, headers=USE, stream=True, max_tokens=8, x_sim_fail_after=2)
    assert any(isinstance(e, dict) and "error" in e for e in sse(failed))
    again = chat(gateway, key, text, headers=USE, stream=True, max_tokens=8, x_sim_fail_after=2)
    assert again.headers["X-Packet-Cache"] == "miss"
    assert seen(live.sim, text) == 2

    dropped = marker()
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": dropped}],
        "max_tokens": 50,
        "stream": True,
        "x_sim_token_delay": 0.05,
    }
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"} | USE
    with requests.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers=headers, stream=True, timeout=30
    ) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    until(
        lambda: any(
            r["disconnected"] for r in live.sim.requests() if dropped in json.dumps(r["body"])
        ),
        "the simulator to see the client go",
    )
    time.sleep(0.2)
    after = chat(gateway, key, dropped, headers=USE, max_tokens=50, stream=True)
    assert after.headers["X-Packet-Cache"] == "miss"


def test_accounts_never_see_each_others_entries(live, account):
    _, key = account
    _, other_key = live.database.account(tier="bulk")
    text = marker()
    assert chat(live.gateway, key, text, headers=USE).headers["X-Packet-Cache"] == "miss"
    assert chat(live.gateway, other_key, text, headers=USE).headers["X-Packet-Cache"] == "miss"
    assert chat(live.gateway, key, text, headers=USE).headers["X-Packet-Cache"] == "hit"
    assert seen(live.sim, text) == 2


def test_refresh_skip_no_cache_no_store_and_a_bad_header(live, account):
    _, key = account
    gateway, text = live.gateway, marker()
    assert chat(gateway, key, text, headers=USE).headers["X-Packet-Cache"] == "miss"
    cases = [
        ({"X-Packet-Cache": "skip"}, "skip", 2),
        ({"X-Packet-Cache": "refresh"}, "miss", 3),
        (USE | {"Cache-Control": "no-cache"}, "miss", 4),
        (USE | {"Cache-Control": "no-store"}, "skip", 5),
        (USE, "hit", 5),
        ({}, None, 6),  # the account default is off: the cache is not involved
    ]
    for headers, status, upstream in cases:
        response = chat(gateway, key, text, headers=headers)
        assert response.status_code == 200
        assert response.headers.get("X-Packet-Cache") == status, headers
        assert seen(live.sim, text) == upstream, headers
    bad = chat(gateway, key, text, headers={"X-Packet-Cache": "always"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_account_default_and_sampled_n(live):
    name, key = live.database.account(tier="bulk")
    live.database.run(store.update_account, name, cache_default=True)
    text = marker()
    until(
        lambda: chat(live.gateway, key, text).headers.get("X-Packet-Cache") == "hit",
        "the account default to reach the gateway",
    )
    sampled = marker()
    for _ in range(2):
        assert chat(live.gateway, key, sampled, n=2).headers["X-Packet-Cache"] == "skip"
    assert seen(live.sim, sampled) == 2
    asked = [chat(live.gateway, key, sampled, n=2, headers=USE) for _ in range(2)]
    assert [r.headers["X-Packet-Cache"] for r in asked] == ["miss", "hit"]
    greedy = chat(live.gateway, key, marker(), n=2, temperature=0)  # n > 1 without sampling
    assert greedy.headers["X-Packet-Cache"] == "miss"


def test_hits_are_free_and_outside_tokens_per_minute(live):
    name, key = live.database.account(tier="tiny")
    text = marker()
    first = chat(live.gateway, key, text, headers=USE, max_tokens=60)
    assert first.status_code == 200
    spent = row_of(live.database, name, first.request_id)
    until(lambda: balance(live.database, name) == 25_000_000 - spent.cost_micros, "settled")
    refused = chat(live.gateway, key, marker(), max_tokens=5)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
    hits = [chat(live.gateway, key, text, headers=USE, max_tokens=60) for _ in range(3)]
    assert [h.status_code for h in hits] == [200] * 3
    assert [h.headers["X-Packet-Cache"] for h in hits] == ["hit"] * 3
    remaining = [int(h.headers["x-ratelimit-remaining-requests"]) for h in hits]
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]  # once each
    assert int(hits[-1].headers["x-ratelimit-remaining-tokens"]) == 0
    rows = [row_of(live.database, name, h.request_id) for h in hits]
    assert all(r.cached and r.cost_micros == 0 and r.total_tokens == 0 for r in rows)
    assert balance(live.database, name) == 25_000_000 - spent.cost_micros
    assert seen(live.sim, text) == 1


def test_concurrent_identical_misses_send_one_request_upstream(live, account):
    _, key = account
    text = marker()

    def one(_: int) -> str:
        slow = {"x_sim_token_delay": 0.02, "max_tokens": 10}
        return chat(live.gateway, key, text, headers=USE, **slow).headers["X-Packet-Cache"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))
    upstream = seen(live.sim, text)
    print(f"\nstampede: 50 concurrent identical misses, {upstream} upstream request(s)")
    assert statuses.count("miss") == upstream == 1 and statuses.count("hit") == 49


@needs_redis
def test_redis_cache_is_shared_by_two_gateways(launcher, sqlite_database):
    sim = launcher.sim()
    shared = {"REDIS_URL": REDIS_URL, "PACKET_LIMIT_KEY_PREFIX": f"c{uuid.uuid4().hex[:8]}"}
    one = launcher.gateway(sqlite_database, upstreams=[sim.url], **shared)
    two = launcher.gateway(sqlite_database, upstreams=[sim.url], **shared)
    _, key = sqlite_database.account()
    text = marker()
    assert chat(one, key, text, headers=USE).headers["X-Packet-Cache"] == "miss"
    second = chat(two, key, text, headers=USE)
    assert second.headers["X-Packet-Cache"] == "hit"
    assert seen(sim, text) == 1

    crowd = marker()  # identical misses split over both gateways: one leads through Redis

    def one_of(i: int) -> str:
        slow = {"x_sim_token_delay": 0.02, "max_tokens": 10}
        gateway = (one, two)[i % 2]
        return chat(gateway, key, crowd, headers=USE, **slow).headers["X-Packet-Cache"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one_of, range(50)))
    upstream = seen(sim, crowd)
    print(f"\nstampede over two gateways (Redis): 50 identical misses, {upstream} upstream")
    assert statuses.count("miss") == upstream == 1 and statuses.count("hit") == 49


def test_a_miss_refused_before_it_went_upstream_holds_nobody_up(live):
    name, key = live.database.account(tier="bulk", balance_micros=0)
    text = marker()
    refused = chat(live.gateway, key, text, headers=USE)
    assert refused.status_code == 403 and refused.headers.get("X-Packet-Cache") is None
    live.database.run(store.credit_account, name, 1_000_000)
    time.sleep(0.6)  # PACKET_AUTH_CACHE_TTL: the gateway sees the credit
    started = time.monotonic()
    served = chat(live.gateway, key, text, headers=USE)
    assert served.status_code == 200 and served.headers["X-Packet-Cache"] == "miss"
    assert time.monotonic() - started < 3  # not the 10 s a stale leader would be waited for
    assert seen(live.sim, text) == 1
