"""Every Python example of the public API page, unchanged but for base URL and key, against
the real gateway (gunicorn + gevent worker) and the simulated vLLM, on SQLite and PostgreSQL."""

import time

import openai
import pytest
import requests
from openai import APIError, AuthenticationError, OpenAI, RateLimitError

from packet import store

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live_database(database):
    return database  # each example on SQLite and, when available, PostgreSQL


@pytest.fixture
def account(live):
    """A new account on the shared gateway: (name, key)."""
    return live.database.account()


def test_quick_start_curl_example(live, account):
    gateway = live.gateway
    _, key = account
    response = requests.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        json={"model": "auto", "messages": [{"role": "user", "content": "Hello!"}]},
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "simulated/vllm-demo"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


def test_python_sdk_example_with_system_prompt(live, account):
    sim, gateway = live.sim, live.gateway
    _, key = account
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    response = client.chat.completions.create(
        model="auto",  # Uses your deployed model
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a haiku about GPUs"},
        ],
        max_tokens=100,
        temperature=0.7,
    )
    assert response.choices[0].message.content
    assert response.model == "simulated/vllm-demo"
    seen = sim.requests()[-1]
    assert seen["body"]["model"] == "simulated/vllm-demo"
    assert seen["body"]["max_tokens"] == 100 and seen["body"]["temperature"] == 0.7
    assert response.usage.completion_tokens == 100


def test_python_streaming_example(live, account):
    gateway = live.gateway
    _, key = account
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    stream = client.chat.completions.create(
        model="simulated/vllm-demo",
        messages=[{"role": "user", "content": "Tell me a story"}],
        stream=True,
    )
    pieces = []
    for chunk in stream:
        if chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces).startswith("This reply comes from the simulated vLLM server")
    assert len(pieces) == 16


def test_stream_usage_when_asked(live, account):
    gateway = live.gateway
    _, key = account
    chunks = list(
        gateway.client(key).chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            max_tokens=5,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_text_completions(live, account):
    gateway = live.gateway
    _, key = account
    client = gateway.client(key)
    response = client.completions.create(model="auto", prompt="Hello, how are you?", max_tokens=7)
    assert response.object == "text_completion"
    assert response.usage.completion_tokens == 7
    assert response.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="auto", prompt=["one", "two"], max_tokens=4, stream=True
        )
    )
    assert streamed == "This reply comes from"


def test_list_and_get_models(live, account):
    gateway = live.gateway
    _, key = account
    client = gateway.client(key)
    models = client.models.list()
    assert [m.id for m in models.data] == ["simulated/vllm-demo"]
    assert models.data[0].model_extra["max_model_len"] == 4096
    assert client.models.retrieve("simulated/vllm-demo").id == "simulated/vllm-demo"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert "simulated/vllm-demo" in info.value.message


def test_error_handling_example_maps_statuses(live, account):
    gateway, database = live.gateway, live.database
    _, key = account
    bad = OpenAI(base_url=f"{gateway.url}/v1", api_key="pk_live_" + "x" * 40, max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        bad.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hello!"}])
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"

    _, broke = database.account(balance_micros=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        gateway.client(broke).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.body["code"] == "insufficient_quota"

    with pytest.raises(openai.NotFoundError) as info:
        gateway.client(key).chat.completions.create(
            model="gpt-17", messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.body["code"] == "model_not_found"
    assert "simulated/vllm-demo" in info.value.message

    with pytest.raises(openai.BadRequestError) as info:
        gateway.client(key).chat.completions.create(model="auto", messages=[], max_tokens=5)
    assert info.value.body["param"] == "messages"

    # the page's handler order: the generic APIError catches the rest
    try:
        gateway.client(key).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}], temperature=5
        )
    except (AuthenticationError, RateLimitError):
        pytest.fail("wrong class")
    except APIError as e:
        assert e.status_code == 400 and e.body["param"] == "temperature"


def test_upstream_4xx_keeps_its_message(live, account):
    gateway = live.gateway
    _, key = account
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client(key).chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=100_000,
        )
    assert "maximum context length is 4096 tokens" in info.value.message


def test_client_key_never_reaches_upstream_and_request_id_flows(live, account):
    sim, gateway = live.sim, live.gateway
    _, key = account
    response = requests.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "trace-abc-123"},
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=10,
    )
    assert response.headers["X-Request-ID"] == "trace-abc-123"
    generated = requests.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True},
        timeout=10,
    )
    assert generated.headers["X-Request-ID"].startswith("req_")
    seen = sim.requests()
    assert {r["request_id"] for r in seen} >= {"trace-abc-123", generated.headers["X-Request-ID"]}
    assert all(key not in str(r) for r in seen)
    assert all(r["authorization"] is None for r in seen)


def test_vllm_extras_pass_through_untouched(live, account):
    sim, gateway = live.sim, live.gateway
    _, key = account
    gateway.client(key).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
        extra_body={
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "structured_outputs": {"choice": ["a", "b"]},
        },
    )
    body = sim.requests()[-1]["body"]
    assert body["top_k"] == 40 and body["min_p"] == 0.05 and body["repetition_penalty"] == 1.1
    assert body["structured_outputs"] == {"choice": ["a", "b"]}


def test_usage_rows_are_written(live, account):
    gateway, database = live.gateway, live.database
    name, key = account
    gateway.client(key).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "a b c"}], max_tokens=3
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = database.run(store.usage_records, name)
        if rows:
            break
        time.sleep(0.1)
    assert rows and rows[0].prompt_tokens == 6 and rows[0].completion_tokens == 3
