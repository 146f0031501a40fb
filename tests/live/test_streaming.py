"""Streaming through the real gateway: raw SSE as curl sees it, disconnects, failures, pings."""

import time

import openai
import orjson
import pytest
import requests

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live_env():
    return {"PACKET_KEEPALIVE_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def key(live):
    return live.database.account()[1]


def post_stream(gateway, key, **body):
    return requests.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": "Count to 10"}],
            "stream": True,
        }
        | body,
        stream=True,
        timeout=30,
    )


def events(response):
    """SSE events as (kind, payload) from a streamed requests response."""
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            yield "data", line[6:]
        elif line.startswith(b":"):
            yield "comment", line


def test_curl_style_sse(live, key):
    gateway = live.gateway
    response = post_stream(gateway, key, max_tokens=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    data = [payload for kind, payload in events(response) if kind == "data"]
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == 5


def test_events_are_relayed_as_they_arrive(live, key):
    sim, gateway = live.sim, live.gateway
    response = post_stream(gateway, key, max_tokens=20, x_sim_token_delay=0.1)
    stream = events(response)
    for kind, payload in stream:
        if kind == "data" and b'"content":"This"' in payload:
            break
    # the first token is here while the upstream is still generating the others
    record = sim.request(response.headers["X-Request-ID"])
    assert not record["finished"]
    assert record["completion_tokens"] < 20
    response.close()


def test_client_disconnect_closes_upstream_within_a_second(live, key):
    sim, gateway = live.sim, live.gateway
    response = post_stream(gateway, key, max_tokens=200, x_sim_token_delay=0.05)
    request_id = response.headers["X-Request-ID"]
    seen = 0
    for kind, _ in events(response):
        seen += kind == "data"
        if seen == 4:
            break
    response.close()
    closed_at = time.time()
    deadline = time.monotonic() + 3
    record = sim.request(request_id)
    while not record["disconnected"] and time.monotonic() < deadline:
        time.sleep(0.05)
        record = sim.request(request_id)
    assert record["disconnected"]
    assert record["disconnected_at"] - closed_at < 1.0
    assert record["completion_tokens"] < 200


def test_mid_stream_upstream_failure_becomes_error_event(live, key):
    gateway = live.gateway
    response = post_stream(gateway, key, max_tokens=10, x_sim_fail_after=3)
    data = [payload for kind, payload in events(response) if kind == "data"]
    assert data[-1] == b"[DONE]"
    error = orjson.loads(data[-2])["error"]
    assert error["code"] == "upstream_error" and "mid-stream" in error["message"]
    with pytest.raises(openai.APIError):
        for _ in gateway.client(key).chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            max_tokens=10,
            extra_body={"x_sim_fail_after": 3},
        ):
            pass


def test_keepalive_pings_during_a_silent_prefill(live, key):
    gateway = live.gateway
    response = post_stream(gateway, key, max_tokens=2, x_sim_first_token_delay=1.0)
    kinds = [kind for kind, _ in events(response)]
    assert kinds[0] == "comment"
    assert kinds.count("comment") >= 2
    assert kinds[-1] == "data"
    chunks = list(
        gateway.client(key).chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            max_tokens=2,
            extra_body={"x_sim_first_token_delay": 0.5},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "This reply"


def test_completions_stream_ends_with_done(live, key):
    gateway = live.gateway
    response = requests.post(
        f"{gateway.url}/v1/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"prompt": "Once", "max_tokens": 3, "stream": True},
        stream=True,
        timeout=10,
    )
    data = [payload for kind, payload in events(response) if kind == "data"]
    assert data[-1] == b"[DONE]"
    assert [orjson.loads(d)["choices"][0]["text"] for d in data[:-1]] == [
        "This",
        " reply",
        " comes",
        "",
    ]


def test_no_upstream_at_all_is_503_with_hint(launcher, _databases):
    database = _databases["sqlite"]
    gateway = launcher.gateway(
        database, upstreams=["http://127.0.0.1:9"], PACKET_WARMUP_TIMEOUT="0"
    )
    _, key = database.account()
    with pytest.raises(openai.InternalServerError) as info:
        gateway.client(key).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503
    assert info.value.body["code"] == "service_unavailable"
    assert "No running inference endpoint found" in info.value.message
