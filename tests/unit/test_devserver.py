"""The simulated vLLM: its own helpers (the benchmark relies on them at high concurrency), and
its answer to any JSON body: a 4xx in vLLM's error shape or a proper answer, never a 500."""

from __future__ import annotations

import json
import os
import resource
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packet.devserver.server import peer_closed
from unit.devserver.wsgi import assert_vllm_error, post, simulator

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
MESSAGES = [{"role": "user", "content": "hello there"}]


def test_peer_closed_works_for_descriptors_above_1023():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip(f"cannot open descriptors above 2048 here (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 2050)
    sock = socket.socket(fileno=high)
    try:
        assert not peer_closed(sock)
        theirs.close()
        assert peer_closed(sock)
    finally:
        sock.close()
        ours.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- in process: the WSGI app with a clock that does not wait ------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"messages": "hello"}),
        (CHAT, {"messages": 5}),
        (CHAT, {"messages": ["hello"]}),
        (CHAT, {"messages": [{"role": "user", "content": {"text": "hi"}}]}),
        (CHAT, {"messages": [{"role": "user", "content": ["hi"]}]}),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}),
        (CHAT, {"messages": MESSAGES, "max_tokens": "10"}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 10.5}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 5.0}),
        (CHAT, {"messages": MESSAGES, "max_tokens": True}),
        (CHAT, {"messages": MESSAGES, "max_tokens": -3}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 0}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 2**63 - 1}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 10**30}),
        (CHAT, {"messages": MESSAGES, "max_completion_tokens": [1]}),
        (CHAT, {"messages": MESSAGES, "stream": True, "stream_options": "yes"}),
        (CHAT, {"messages": MESSAGES, "stream": True, "stream_options": [True]}),
        (CHAT, {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": "y"}}),
        (CHAT, {"messages": MESSAGES, "stream": "true"}),
        (CHAT, {"messages": MESSAGES, "n": [2]}),
        (CHAT, {"messages": MESSAGES, "n": 0}),
        (CHAT, {"messages": MESSAGES, "model": 7}),
        (CHAT, {"messages": MESSAGES, "model": ["simulated/vllm-demo"]}),
        (CHAT, {"messages": MESSAGES, "model": "ünïcødé/模型 😀"}),
        (CHAT, {"messages": MESSAGES, "x_sim_token_delay": "fast"}),
        (CHAT, {"messages": MESSAGES, "x_sim_first_token_delay": -1}),
        (CHAT, {"messages": MESSAGES, "x_sim_token_delay": 1e300}),
        (CHAT, {"messages": MESSAGES, "stream": True, "x_sim_fail_after": "3"}),
        (CHAT, {"messages": MESSAGES, "stream": True, "x_sim_stall_after": [3]}),
        (CHAT, {"messages": MESSAGES, "x_sim_break": "sometimes"}),
        (COMPLETIONS, {"prompt": {"text": "hi"}}),
        (COMPLETIONS, {"prompt": 42}),
        (COMPLETIONS, {"prompt": [{"a": [None]}]}),
        (COMPLETIONS, {"prompt": [[1, "two"]]}),
        (COMPLETIONS, {"prompt": [True]}),
        (COMPLETIONS, {"prompt": "hi", "max_tokens": "all of them"}),
        (COMPLETIONS, []),
        (COMPLETIONS, "a string"),
        (COMPLETIONS, None),
    ],
)
def test_a_body_of_the_wrong_shape_is_a_4xx_in_vllms_error_shape(path, body):
    assert_vllm_error(post(simulator(), path, json.dumps(body).encode()))


def test_what_is_not_json_is_a_400():
    for raw in (b"", b"{", b'{"a": NaN}', b"\xff\xfe", b'{"s": "\\ud800"}'):
        assert_vllm_error(post(simulator(), CHAT, raw))


def test_well_formed_bodies_are_still_answered():
    app = simulator()
    plain = post(
        app, COMPLETIONS, json.dumps({"prompt": [[1, 2], "a b"], "max_tokens": 2}).encode()
    )
    assert plain.status == 200
    assert plain.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 6, "completion_tokens": 2}
    body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    streamed = post(app, CHAT, json.dumps(body).encode())
    assert streamed.status == 200 and streamed.writes == [b""]  # headers before prefill
    assert streamed.body.endswith(b"data: [DONE]\n\n")


# Values for the fields the simulator reads: anything JSON, and plausible ones, so both the
# checks and the answers behind them are reached.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
COUNTS = st.integers(min_value=1, max_value=40)
SMALL_INTS = st.integers(min_value=-3, max_value=40)
CONTENT = (
    st.none()
    | st.text(max_size=30)
    | st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}), max_size=3
    )
)
FIELDS = {
    "model": st.sampled_from(["simulated/vllm-demo", "other/model", "", "missing/model"]),
    "messages": st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": CONTENT}),
        max_size=4,
    ),
    "prompt": st.text(max_size=40)
    | st.lists(
        st.text(max_size=10) | st.integers() | st.lists(st.integers(), max_size=3), max_size=4
    ),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries(
        {},
        optional={"include_usage": st.booleans(), "continuous_usage_stats": st.booleans()},
    ),
    "max_tokens": COUNTS,
    "max_completion_tokens": COUNTS,
    "n": COUNTS,
    "x_sim_token_delay": st.floats(min_value=0, max_value=1),
    "x_sim_first_token_delay": st.floats(min_value=0, max_value=1),
    "x_sim_fail_after": SMALL_INTS,
    "x_sim_stall_after": SMALL_INTS,
    "x_sim_usage": JSON_VALUES,
    "x_sim_break": st.none(),  # "close", "garbage": a real socket (tests/live/test_money.py)
}


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Plausible fields, then up to three of them replaced by any JSON at all."""
    body = draw(st.fixed_dictionaries({}, optional=FIELDS))
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        body[name] = draw(JSON_VALUES.filter(lambda v: v not in ("close", "garbage")))
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from([CHAT, COMPLETIONS]),
    body=st.one_of(bodies(), bodies(), bodies(), JSON_VALUES),
)
def test_any_json_body_is_answered_without_a_5xx(path, body):
    answer = post(simulator(), path, json.dumps(body).encode())
    assert answer.status < 500, (answer, body)
    if answer.status >= 400:
        assert_vllm_error(answer)
    elif answer.aborted:
        assert isinstance(body.get("x_sim_fail_after"), int), body
    elif body.get("stream") is True:
        assert answer.body.endswith(b"data: [DONE]\n\n")
    else:
        assert answer.json()["choices"][0]["finish_reason"] == "length"
