"""Property: whatever body a client sends, the gateway answers below 500, in the envelope.

Hypothesis builds bodies for chat and completions from the fields the API page documents,
each either plausible or any JSON value (wrong types, huge and negative numbers, nesting,
unicode), plus unknown fields and bodies that are not JSON at all, and sends them to the real
gateway (gunicorn, gevent, prices set) in front of the simulated vLLM. Every answer is 2xx or
a 4xx whose body is the OpenAI error envelope; a stream always ends with ``[DONE]``.
"""

from __future__ import annotations

import json

import pytest
import requests
from helpers import BULK, PRICES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.live

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
COUNT = st.integers(min_value=-3, max_value=40) | st.integers(min_value=-(2**64), max_value=2**64)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "nobody"]) | JSON},
        optional={"content": st.text(max_size=40) | JSON, "name": JSON, "tool_calls": JSON},
    ),
    min_size=0,
    max_size=3,
)
COMMON = {
    "model": st.sampled_from(["auto", "simulated/vllm-demo", "no-such-model"]) | JSON,
    "max_tokens": COUNT | JSON,
    "n": st.integers(min_value=-1, max_value=3) | JSON,
    "temperature": st.floats(min_value=-1, max_value=3) | JSON,
    "top_p": JSON,
    "stop": st.text(max_size=5) | JSON,
    "seed": COUNT | JSON,
    "stream": st.booleans() | JSON,
    "stream_options": st.fixed_dictionaries(
        {}, optional={"include_usage": st.booleans() | JSON, "continuous_usage_stats": JSON}
    )
    | JSON,
    "logprobs": JSON,
    "user": JSON,
    "x_unknown_field": JSON,
}
CHAT = st.fixed_dictionaries(
    {"messages": MESSAGES | JSON},
    optional=COMMON
    | {
        "max_completion_tokens": COUNT | JSON,
        "best_of": COUNT | JSON,
        "top_logprobs": COUNT | JSON,
        "tools": JSON,
        "tool_choice": JSON,
        "response_format": JSON,
        "logit_bias": JSON,
    },
)
COMPLETION = st.fixed_dictionaries(
    {"prompt": st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=3) | JSON},
    optional=COMMON | {"best_of": COUNT | JSON, "echo": JSON, "suffix": JSON},
)
NOT_JSON = st.binary(max_size=64) | st.sampled_from([b"", b"{", b"[1,2", b'{"a":NaN}', b"null"])


@pytest.fixture(scope="module")
def live_env():
    return PRICES | BULK


@pytest.fixture(scope="module")
def session(live):
    """A client of the shared gateway with a key whose limits and balance never refuse."""
    _, key = live.database.account(tier="bulk", balance_micros=10**12)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    # No keep-alive: an idle connection the server closes between two examples would be a
    # client-side race, not an answer.
    session.headers["Connection"] = "close"
    return session


def check(answer: requests.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        assert answer.headers["Content-Type"].startswith("application/json")
        error = answer.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
    elif answer.headers["Content-Type"].startswith("text/event-stream"):
        assert answer.text.rstrip().endswith("data: [DONE]")
    else:
        assert "choices" in answer.json()


def send(live, session, path: str, data: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    check(session.post(f"{live.gateway.url}{path}", data=data, headers=headers, timeout=60))


SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(body=CHAT)
def test_any_chat_body(live, session, body):
    send(live, session, "/v1/chat/completions", json.dumps(body).encode())


@SETTINGS
@given(body=COMPLETION)
def test_any_completions_body(live, session, body):
    send(live, session, "/v1/completions", json.dumps(body).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=NOT_JSON, path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_any_bytes(live, session, data, path):
    send(live, session, path, data)
