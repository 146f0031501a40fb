"""The response cache's pure parts: the policy, the key, the memory store's bounds and expiry
(with a clock moved by hand), and an answer turned between its JSON and stream forms."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from helpers import Clock
from processes import REDIS_URL, free_port, needs_redis

from packet.errors import InvalidRequest
from packet.gateway import cache_forms as forms
from packet.gateway.cache import REFRESH, SKIP, USE, cacheable, key, mode
from packet.gateway.cache_store import ENTRY_OVERHEAD, MemoryStore, RedisStore, build_store

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.mark.parametrize(
    ("header", "cache_control", "default", "expected"),
    [
        (None, None, False, None),
        (None, "no-cache", False, None),
        (None, None, True, USE),
        ("use", None, False, USE),
        (" Refresh ", None, False, REFRESH),
        ("skip", None, True, SKIP),
        ("use", "no-cache", False, REFRESH),
        ("use", "max-age=0, no-store", False, SKIP),
        (None, "No-Store", True, SKIP),
        ("skip", "no-cache", False, SKIP),
    ],
)
def test_mode(header, cache_control, default, expected):
    assert mode(header, cache_control, default) == expected


def test_an_unknown_header_value_is_a_400():
    with pytest.raises(InvalidRequest):
        mode("yes", None, False)


def test_cacheable_routes_and_sampling():
    assert cacheable("chat.completions", BODY, explicit=False)
    assert not cacheable("messages", BODY, explicit=True)
    assert not cacheable("rerank", BODY, explicit=True)
    assert not cacheable("responses", {"input": "x"}, explicit=True)  # store defaults to true
    assert cacheable("responses", {"input": "x", "store": False}, explicit=True)
    sampled = BODY | {"n": 3}
    assert not cacheable("chat.completions", sampled, explicit=False)
    assert cacheable("chat.completions", sampled, explicit=True)
    assert cacheable("chat.completions", sampled | {"temperature": 0}, explicit=False)


def test_key_ignores_stream_options_user_and_the_model_field_only():
    base = key("p", 1, "chat.completions", "m", BODY)
    same = BODY | {"stream": True, "stream_options": {"include_usage": True}, "user": "u"}
    assert key("p", 1, "chat.completions", "m", same | {"model": "m"}) == base
    reordered = dict(reversed(list(BODY.items())))
    assert key("p", 1, "chat.completions", "m", reordered) == base
    assert key("p", 2, "chat.completions", "m", BODY) != base
    assert key("p", 1, "chat.completions", "other", BODY) != base
    assert key("p", 1, "completions", "m", BODY) != base
    assert key("p", 1, "chat.completions", "m", BODY | {"max_tokens": 6}) != base
    assert base.startswith("p:cache:1:")


def test_memory_store_expires_entries_with_the_clock():
    clock = Clock(1000.0)
    store = MemoryStore(10_000, 1000, ttl=60, clock=clock)
    store.put("k", b"v")
    clock.now += 59.9
    assert store.get("k") == b"v"
    clock.now += 0.2
    assert store.get("k") is None and len(store) == 0 and store.bytes == 0


def test_memory_store_is_bounded_in_bytes_least_recently_used_out():
    size = ENTRY_OVERHEAD + 2 + 100  # key "k0", value
    store = MemoryStore(max_bytes=10 * size, max_entry_bytes=500, ttl=60)
    for i in range(10):
        store.put(f"k{i}", bytes(100))
    assert len(store) == 10 and store.bytes == 10 * size
    store.get("k0")  # used: kept
    for i in range(10, 200):
        store.put(f"k{i}", bytes(100))
        assert store.bytes <= store.max_bytes
    assert store.get("k1") is None and store.get("k199") == bytes(100)
    store.put("big", bytes(501))  # over the entry bound: not stored
    assert store.get("big") is None
    store.put("k199", bytes(50))  # replaced, accounted once
    assert store.bytes <= store.max_bytes and store.get("k199") == bytes(50)


CHUNKS = [
    {
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ]
    },
    {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": None}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]},
                "finish_reason": None,
            }
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]},
                "finish_reason": None,
            }
        ]
    },
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
]


def entry(**fields):
    return {"route": "chat.completions", "model": "m", "at": 0.0, "usage": [3, 4]} | fields


def test_a_stream_is_stored_only_when_every_choice_finished():
    assert forms.complete_chunks(CHUNKS[:-2]) is None
    kept = forms.complete_chunks([c | {"id": "x", "created": 1} for c in CHUNKS])
    assert kept is not None and len(kept) == 6 and all("id" not in c for c in kept)


def test_chunks_assembled_into_a_chat_completion():
    stored = forms.complete_chunks(CHUNKS)
    answer = orjson.loads(forms.render_json(entry(events=stored, json=None), 50.0))
    assert answer["object"] == "chat.completion" and answer["created"] == 50
    assert answer["id"].startswith("chatcmpl-") and answer["model"] == "m"
    message = answer["choices"][0]["message"]
    assert message["content"] == "Hello there"
    assert message["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_a_json_answer_split_into_chunks_and_back():
    original = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    stored = entry(json=original, events=None)
    body = forms.render_sse(stored, 9.0, include_usage=True, continuous_usage=False)
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["id"] for c in chunks} != {"chatcmpl-1"} and len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["usage"]["total_tokens"] == 7 and chunks[-1]["choices"] == []
    again = forms.complete_chunks(chunks)
    assert again is not None
    rebuilt = orjson.loads(forms.render_json(entry(events=again, json=None), 9.0))
    assert rebuilt["choices"] == original["choices"]
    quiet = forms.render_sse(stored, 9.0, include_usage=False, continuous_usage=False)
    assert b'"usage"' not in quiet and quiet.endswith(b"data: [DONE]\n\n")


def test_text_completion_forms():
    chunks = [
        {"choices": [{"index": 0, "text": "once", "finish_reason": None}]},
        {"choices": [{"index": 0, "text": " upon", "finish_reason": "length"}]},
    ]
    stored = entry(route="completions", events=forms.complete_chunks(chunks), json=None)
    answer = orjson.loads(forms.render_json(stored, 1.0))
    assert answer["object"] == "text_completion" and answer["choices"][0]["text"] == "once upon"
    assert answer["choices"][0]["finish_reason"] == "length"


def test_a_responses_entry_streams_only_when_it_came_as_a_stream():
    response = {"id": "resp_1", "status": "completed", "created_at": 1, "output": []}
    from_json = entry(route="responses", json=response, events=None)
    assert not forms.can_render(from_json, stream=True) and forms.can_render(from_json, False)
    events = [
        ["response.created", {"response": response}],
        ["response.completed", {"response": response}],
    ]
    streamed = entry(route="responses", json=None, events=events)
    assert forms.complete_events(events) and not forms.complete_events(events[:1])
    answer = orjson.loads(forms.render_json(streamed, 5.0))
    assert answer["id"] != "resp_1" and answer["created_at"] == 5
    replay = forms.render_sse(streamed, 5.0, include_usage=False, continuous_usage=False)
    assert replay.count(b"event: response.") == 2 and b'"resp_1"' not in replay


def test_a_batch_mixing_hits_and_other_rows_keeps_each_rows_cache_fields(app):
    from packet import store

    with app.app_context():
        account = store.create_account("mixed", "free", 0)
        row = {
            "request_id": "r",
            "account_id": account.id,
            "key_id": None,
            "endpoint_url": None,
            "model": "m",
            "route": "chat.completions",
            "stream": False,
            "status": 200,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "total_tokens": 2,
            "cost_micros": 0,
            "ttft_ms": None,
            "latency_ms": 1,
            "client_disconnected": False,
            "usage_source": "upstream",
        }
        hit = row | {"cached": True, "saved_tokens": 5, "total_tokens": 0}
        store.write_usage(store.Batch(records=[row, hit, row]))
        store.write_usage(store.Batch(records=[hit, row]))
        rows = store.usage_records("mixed")
        assert [(r.cached, r.saved_tokens) for r in rows] == [
            (False, 0),
            (True, 5),
            (False, 0),
            (True, 5),
            (False, 0),
        ]
        report = store.usage_rows("mixed")[0]
        assert (report.requests, report.cache_hits, report.saved_tokens) == (5, 2, 10)
    text = app.test_cli_runner().invoke(args=["usage", "mixed"]).output
    assert "cache: 2 hits, 10 tokens saved" in text


@needs_redis
def test_redis_store_fetch_claims_once_and_put_lets_go():
    import redis

    store = RedisStore(redis.Redis.from_url(REDIS_URL), max_entry_bytes=100, ttl=60)
    entry = f"t:cache:{uuid.uuid4().hex}"
    lock = entry + ":lock"
    assert store.fetch(entry, lock, 5) == (None, True)  # a miss that leads
    assert store.fetch(entry, lock, 5) == (None, False)  # another process: it waits
    assert store.peek(entry, lock) == (None, True)
    store.put(entry, b"answer", lock)
    assert store.peek(entry, lock) == (b"answer", False)
    assert store.fetch(entry, lock, 5) == (b"answer", False)
    assert 0 < store.client.pttl(entry) <= 60_000
    other = entry + "x"
    assert store.fetch(other, other + ":lock", 5) == (None, True)
    store.put(other, bytes(101), other + ":lock")  # too large: not stored, the lock let go
    assert store.peek(other, other + ":lock") == (None, False)
    store.client.delete(entry)


def test_redis_store_unreachable_is_a_miss_at_once_nobody_waits_for():
    from limits.storage import RedisStorage

    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    store = build_store(storage, 1000, 100, 60)
    assert isinstance(store, RedisStore)
    started = time.monotonic()
    assert store.fetch("k", "k:lock", 5) == (None, True)  # refused: no retries, no backoff
    assert store.get("k") is None and store.peek("k", "k:lock") == (None, False)  # paused
    store.put("k", b"v", "k:lock")  # nothing raised
    assert time.monotonic() - started < 1.0
