"""Anthropic's Messages API through the real gateway, with the anthropic SDK: the key as
``x-api-key``, Anthropic's events and error envelope, usage from its events."""

from __future__ import annotations

import anthropic
import pytest
import requests
from helpers import rid, row_of

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def live_env():
    # A dead endpoint is given up on after a second, not the default warm-up bound.
    return {"PACKET_TIERS": '{"tiny": {"rpm": 2, "tpm": 100000}}', "PACKET_WARMUP_TIMEOUT": "1"}


def sdk(live, key: str, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.gateway.url, api_key=key, max_retries=0, **kwargs)


def test_plain_message_is_metered_as_reported(live):
    name, key = live.database.account()
    headers = rid()
    message = sdk(live, key).messages.create(
        model=SIM_MODEL, max_tokens=6, messages=HELLO, extra_headers=headers
    )
    assert message.type == "message" and message.role == "assistant"
    assert len(message.content[0].text.split()) == 6
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 6)
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == ("messages", 5, 6)
    assert row.usage_source == "upstream"
    seen = live.sim.request(headers["X-Request-ID"])
    assert key not in str(seen)  # the client's key never reaches the upstream


def test_stream_gives_text_and_usage_from_its_events(live):
    name, key = live.database.account()
    headers = rid()
    with sdk(live, key).messages.stream(
        model="auto", max_tokens=5, messages=HELLO, system="be brief", extra_headers=headers
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text and final.usage.output_tokens == 5
    row = row_of(live.database, name, headers["X-Request-ID"])
    seen = live.sim.request(headers["X-Request-ID"])
    assert (row.prompt_tokens, row.completion_tokens) == (seen["prompt_tokens"], 5)
    assert row.stream and row.usage_source == "upstream"


def test_raw_stream_is_anthropics_named_events(live):
    _, key = live.database.account()
    body = {"max_tokens": 3, "messages": HELLO, "stream": True}
    with requests.post(
        f"{live.gateway.url}/v1/messages",
        json=body,
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        stream=True,
        timeout=30,
    ) as answer:
        names = [line[7:].decode() for line in answer.iter_lines() if line.startswith(b"event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names.count("content_block_delta") == 3 and "message_delta" in names


def test_count_tokens_is_free(live):
    name, key = live.database.account()
    headers = rid()
    counted = sdk(live, key).messages.count_tokens(
        model=SIM_MODEL, messages=HELLO, extra_headers=headers
    )
    assert counted.input_tokens == 5
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens, row.cost_micros) == (
        "messages.count_tokens",
        0,
        0,
        0,
    )


def test_bad_key_is_anthropics_authentication_error(live):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(live, "pk_live_not_a_real_key").messages.create(
            model=SIM_MODEL, max_tokens=3, messages=HELLO
        )
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_bad_body_is_invalid_request_error_and_never_reaches_the_upstream(live):
    _, key = live.database.account()
    before = len(live.sim.requests())
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(live, key).messages.create(model=SIM_MODEL, max_tokens=0, messages=HELLO)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in caught.value.message
    assert len(live.sim.requests()) == before


def test_rate_limit_is_anthropics_429_with_its_headers(live):
    _, key = live.database.account(tier="tiny")
    client = sdk(live, key)
    raw = client.messages.with_raw_response.create(model=SIM_MODEL, max_tokens=2, messages=HELLO)
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    client.messages.create(model=SIM_MODEL, max_tokens=2, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=SIM_MODEL, max_tokens=2, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(caught.value.response.headers["retry-after"]) > 0


def test_no_endpoint_is_overloaded_so_the_sdk_backs_off(live):
    _, key = live.database.account(endpoints=("http://127.0.0.1:9",))
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(live, key).messages.create(model=SIM_MODEL, max_tokens=2, messages=HELLO)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
