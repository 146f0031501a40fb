"""The simulated vLLM as a real process behind gevent's server: garbage gets a 4xx, and no
traceback reaches its log (its answers to any body, as pure code: tests/unit/test_devserver.py)."""

import pytest
import requests

pytestmark = pytest.mark.live

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
MESSAGES = [{"role": "user", "content": "hello there"}]


def test_the_server_answers_garbage_with_4xx_and_logs_no_traceback(sim):
    bodies = [
        {"messages": "hello", "max_tokens": "many"},
        {"messages": MESSAGES, "stream": True, "stream_options": 1},
        {"messages": MESSAGES, "stream": True, "x_sim_stall_after": "soon"},
        {"messages": MESSAGES, "x_sim_token_delay": None, "max_tokens": -1},
        {"messages": [{"content": [{"text": {"nested": ["garbage", {"x": None}]}}]}]},
    ]
    for body in bodies:
        response = requests.post(f"{sim.url}{CHAT}", json=body, timeout=10)
        assert 400 <= response.status_code < 500, body
        assert response.json()["error"]["code"] == response.status_code
    for prompt in ({"text": "hi"}, [[1, [2]]], 1.5):
        response = requests.post(f"{sim.url}{COMPLETIONS}", json={"prompt": prompt}, timeout=10)
        assert response.status_code == 400
    fine = requests.post(f"{sim.url}{CHAT}", json={"messages": MESSAGES}, timeout=10)
    assert fine.status_code == 200
    assert "Traceback" not in sim.output()


def test_embeddings_and_a_streamed_response_over_a_real_socket(sim):
    embedded = requests.post(
        f"{sim.url}/v1/embeddings",
        json={"input": ["hello there"], "dimensions": 4},
        headers={"X-Request-ID": "live-embd"},
        timeout=10,
    )
    assert embedded.status_code == 200
    assert len(embedded.json()["data"][0]["embedding"]) == 4
    assert sim.request("live-embd")["prompt_tokens"] == embedded.json()["usage"]["prompt_tokens"]
    with requests.post(
        f"{sim.url}/v1/responses",
        json={"input": "hi", "stream": True, "max_output_tokens": 3},
        headers={"X-Request-ID": "live-resp"},
        stream=True,
        timeout=10,
    ) as streamed:
        assert streamed.headers["Content-Type"] == "text/event-stream"
        raw = b"".join(streamed.iter_content(None))
    names = [line[len(b"event: ") :] for line in raw.split(b"\n") if line.startswith(b"event: ")]
    assert names[0] == b"response.created" and names[-1] == b"response.completed"
    assert names.count(b"response.output_text.delta") == 3 and b"[DONE]" not in raw
    record = sim.request("live-resp")
    assert record["finished"] and (record["prompt_tokens"], record["completion_tokens"]) == (1, 3)
