"""``/v1/messages``: Anthropic's shape, its named-event stream (no ``[DONE]``), its error
envelope and key header, and usage equal to the record."""

import json

import pytest

from packet.devserver import Settings, Simulator
from unit.devserver.wsgi import MODELS, call, last_record, post_json, simulator

PATH = "/v1/messages"
MESSAGES = [{"role": "user", "content": "hello there"}]


def assert_anthropic_error(answer, kind="invalid_request_error"):
    assert 400 <= answer.status < 500, answer
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_a_whole_message_has_anthropics_shape_and_the_records_usage():
    app = simulator()
    body = {"max_tokens": 3, "messages": MESSAGES, "system": [{"type": "text", "text": "be nice"}]}
    answer = post_json(app, PATH, body)
    assert answer.status == 200
    message = answer.json()
    assert message["id"].startswith("msg_") and message["type"] == "message"
    assert message["role"] == "assistant" and message["stop_reason"] == "max_tokens"
    assert len(message["content"][0]["text"].split()) == 3
    assert message["usage"] == {"input_tokens": 7, "output_tokens": 3}  # 2 + 3 template + 2
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"], record["finished"]) == (
        7,
        3,
        True,
    )


def test_the_stream_is_anthropics_named_events_without_done():
    app = simulator()
    answer = post_json(app, PATH, {"max_tokens": 2, "messages": MESSAGES, "stream": True})
    events = answer.events()
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert b"[DONE]" not in answer.body
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"] == {"input_tokens": 5, "output_tokens": 1}
    assert events[3][1]["delta"]["type"] == "text_delta"
    assert events[6][1]["usage"] == {"output_tokens": 2}
    assert events[6][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"], record["finished"]) == (
        5,
        2,
        True,
    )


def test_count_tokens_answers_and_records_the_prompt():
    app = simulator()
    answer = post_json(app, f"{PATH}/count_tokens", {"messages": MESSAGES, "system": "a b"})
    assert answer.json() == {"input_tokens": 7}
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (7, 0)


def test_the_key_may_come_as_x_api_key_and_a_wrong_one_is_an_anthropic_401():
    app = Simulator(Settings(models=MODELS, api_key="k"), sleep=lambda _: None)
    raw = json.dumps({"max_tokens": 1, "messages": MESSAGES}).encode()
    assert call(app, "POST", PATH, raw, HTTP_X_API_KEY="k").status == 200
    assert call(app, "POST", PATH, raw, HTTP_AUTHORIZATION="Bearer k").status == 200
    refused = call(app, "POST", PATH, raw, HTTP_X_API_KEY="wrong")
    assert refused.status == 401
    assert_anthropic_error(refused, "authentication_error")
    assert call(app, "POST", "/v1/embeddings", raw, HTTP_X_API_KEY="k").status == 401


@pytest.mark.parametrize(
    "body",
    [
        {"messages": MESSAGES},
        {"max_tokens": 0, "messages": MESSAGES},
        {"max_tokens": "3", "messages": MESSAGES},
        {"max_tokens": 3},
        {"max_tokens": 3, "messages": []},
        {"max_tokens": 3, "messages": "hi"},
        {"max_tokens": 3, "messages": [{"role": "user", "content": 5}]},
        {"max_tokens": 3, "messages": MESSAGES, "system": 5},
        {"max_tokens": 3, "messages": MESSAGES, "system": [{"text": 5}]},
        {"max_tokens": 3, "messages": MESSAGES, "stream": "yes"},
        {"max_tokens": 10**6, "messages": MESSAGES},
        [],
    ],
)
def test_a_bad_body_is_a_400_in_anthropics_envelope(body):
    assert_anthropic_error(post_json(simulator(), PATH, body))


def test_an_unknown_model_is_an_anthropic_not_found():
    body = {"max_tokens": 3, "messages": MESSAGES, "model": "missing/model"}
    answer = post_json(simulator(), PATH, body)
    assert answer.status == 404
    assert_anthropic_error(answer, "not_found_error")
