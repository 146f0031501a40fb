"""The Responses API through the real gateway with the openai SDK: plain, streamed, stored
responses followed to the replica that holds them, and never to another account."""

from __future__ import annotations

import asyncio

import openai
import pytest
import requests
from helpers import rid, row_of, send
from openai import AsyncOpenAI

from packet.usage import MESSAGE_TOKENS

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"


@pytest.fixture(scope="module")
def replicas(module_launcher):
    """Two replicas of the same model: a stored response lives on one of them only."""
    first = module_launcher.sim(wait=False)
    second = module_launcher.sim(wait=False)
    first.wait()
    second.wait()
    return first, second


@pytest.fixture(scope="module")
def pair(live, replicas):
    """An account whose endpoints are the two replicas: (name, key, client)."""
    name, key = live.database.account(endpoints=tuple(r.url for r in replicas))
    return name, key, live.gateway.client(key)


def holder(replicas, request_id: str):
    """The replica that served ``request_id``."""
    [sim] = [s for s in replicas if any(r["request_id"] == request_id for r in s.requests())]
    return sim


def test_plain_response_is_metered_as_reported(live):
    name, key = live.database.account()
    client = live.gateway.client(key)
    headers = rid()
    response = client.responses.create(
        model="auto",
        input="write a haiku about gateways",
        max_output_tokens=7,
        extra_headers=headers,
    )
    assert response.status == "completed" and response.id.startswith("resp_")
    assert len(response.output_text.split()) == 7
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 7)
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == ("responses", 5, 7)
    assert row.usage_source == "upstream"


def test_stream_relays_named_events_without_done(live):
    name, key = live.database.account()
    headers = {"Authorization": f"Bearer {key}"} | rid()
    body = {"input": "hello there", "stream": True, "max_output_tokens": 4}
    with requests.post(
        f"{live.gateway.url}/v1/responses", json=body, headers=headers, stream=True, timeout=30
    ) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line]
    names = [line[7:].decode() for line in lines if line.startswith(b"event: ")]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert names.count("response.output_text.delta") == 4
    assert b"data: [DONE]" not in lines
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.prompt_tokens, row.completion_tokens, row.stream) == (2, 4, True)
    assert row.usage_source == "upstream"


def test_sdk_stream_gives_text_and_the_completed_response(live):
    _, key = live.database.account()
    client = live.gateway.client(key)
    with client.responses.stream(model="auto", input="stream me", max_output_tokens=5) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.usage.output_tokens == 5


def test_a_stream_cut_short_is_metered_from_what_was_relayed(live):
    name, key = live.database.account()
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"} | rid()
    body = {
        "input": "long one",
        "stream": True,
        "max_output_tokens": 200,
        "x_sim_token_delay": 0.02,
    }
    with requests.post(
        f"{live.gateway.url}/v1/responses", json=body, headers=headers, stream=True, timeout=30
    ) as answer:
        deltas = 0
        for line in answer.iter_lines():
            deltas += line == b"event: response.output_text.delta"
            if deltas == 3:
                break
    row = row_of(live.database, name, headers["X-Request-ID"])
    seen = live.sim.request(headers["X-Request-ID"])
    assert seen["disconnected"] and row.client_disconnected
    assert row.completion_tokens == seen["completion_tokens"] >= 3
    # The input's tokens come only with response.completed: without it, the input is counted
    # from its text ("long one": 2 tokens, plus what a template adds), and the row says so.
    assert row.usage_source == "counted" and seen["prompt_tokens"] == 2
    assert row.prompt_tokens == 2 + MESSAGE_TOKENS


def test_follow_ups_go_to_the_replica_that_stored_the_response(live, pair, replicas):
    name, _, client = pair
    for _ in range(4):  # whichever replica each lands on, its follow-ups go there
        headers = rid()
        first = client.responses.create(model="auto", input="remember this", extra_headers=headers)
        owner = holder(replicas, headers["X-Request-ID"])
        follow = rid()
        second = client.responses.create(
            model="auto",
            input="and this",
            previous_response_id=first.id,
            max_output_tokens=3,
            extra_headers=follow,
        )
        assert holder(replicas, follow["X-Request-ID"]) is owner
        assert second.usage.input_tokens > first.usage.input_tokens  # the context came along
        got = rid()
        assert client.responses.retrieve(first.id, extra_headers=got).id == first.id
        assert holder(replicas, got["X-Request-ID"]) is owner
        listed = rid()
        assert client.responses.input_items.list(first.id, extra_headers=listed).data
        assert holder(replicas, listed["X-Request-ID"]) is owner
        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)
    row = row_of(live.database, name, got["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == ("responses.retrieve", 0, 0)


def test_another_accounts_response_id_is_a_404_that_never_reaches_an_endpoint(live, pair):
    _, _, owner_client = pair
    made = owner_client.responses.create(model="auto", input="mine")
    _, stranger = live.database.account()
    client = live.gateway.client(stranger)
    before = len(live.sim.requests())
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="auto", input="steal", previous_response_id=made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_never_made")
    assert len(live.sim.requests()) == before
    assert owner_client.responses.retrieve(made.id).id == made.id  # still the owner's


def test_a_response_not_stored_is_not_remembered(live):
    _, key = live.database.account()
    client = live.gateway.client(key)
    made = client.responses.create(model="auto", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_async_client_creates_and_streams(live):
    _, key = live.database.account()

    async def main() -> tuple[str, str]:
        async with AsyncOpenAI(base_url=f"{live.gateway.url}/v1", api_key=key) as client:
            plain = await client.responses.create(model="auto", input="hi", max_output_tokens=3)
            stream = await client.responses.create(
                model="auto", input="hi", max_output_tokens=3, stream=True
            )
            text = "".join(
                [e.delta async for e in stream if e.type == "response.output_text.delta"]
            )
        return plain.output_text, text

    plain, streamed = asyncio.run(main())
    assert plain == streamed and len(plain.split()) == 3


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "auto"}, "input"),
        ({"input": []}, "input"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "stream": "yes"}, "stream"),
    ],
)
def test_bad_bodies_are_400_naming_param_and_never_reach_the_upstream(live, body, param):
    _, key = live.database.account()
    before = len(live.sim.requests())
    response = send(live.gateway, key, "POST", "/v1/responses", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert len(live.sim.requests()) == before
