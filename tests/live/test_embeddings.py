"""POST /v1/embeddings through the real gateway, with the official SDK (sync and async)."""

from __future__ import annotations

import asyncio
import base64
import struct

import openai
import pytest
from helpers import PRICES, charge, rid, row_of, send, settled_balance, wait_rows
from openai import AsyncOpenAI

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"


@pytest.fixture(scope="module")
def live_env():
    return PRICES | {"PACKET_TIERS": '{"small": {"rpm": 1000, "tpm": 60}}'}


def test_sdk_embeds_strings_and_token_ids_metered_as_the_upstream_reported(live):
    name, key = live.database.account()
    client = live.gateway.client(key)
    headers = rid()
    result = client.embeddings.create(
        model="auto", input=["the quick brown fox", "jumps"], extra_headers=headers
    )
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == len(result.data[1].embedding) > 0
    assert result.model == SIM_MODEL and result.usage.prompt_tokens == 5
    seen = live.sim.request(headers["X-Request-ID"])
    assert seen["path"] == "/v1/embeddings" and seen["body"]["model"] == SIM_MODEL
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == ("embeddings", 5, 0)
    assert row.usage_source == "upstream" and row.cost_micros == charge(5, 0)

    ids = rid()
    tokens = client.embeddings.create(model=SIM_MODEL, input=[[1, 2, 3]], extra_headers=ids)
    assert (
        tokens.usage.prompt_tokens
        == 3
        == row_of(live.database, name, ids["X-Request-ID"]).prompt_tokens
    )
    settled_balance(
        live.database, name, 25_000_000, [row, row_of(live.database, name, ids["X-Request-ID"])]
    )


def test_base64_is_relayed_as_sent(live):
    _, key = live.database.account()
    response = send(
        live.gateway,
        key,
        "POST",
        "/v1/embeddings",
        json={"input": "hello world", "encoding_format": "base64"},
    )
    assert response.status_code == 200, response.text
    encoded = response.json()["data"][0]["embedding"]
    floats = struct.unpack(f"<{len(base64.b64decode(encoded)) // 4}f", base64.b64decode(encoded))
    assert floats and all(-1.0 <= f <= 1.0 for f in floats)
    # the SDK asks for base64 by default and decodes it: the same vector
    client = live.gateway.client(key)
    assert client.embeddings.create(model="auto", input="hello world").data[
        0
    ].embedding == pytest.approx(list(floats))


def test_async_client_embeds_concurrently(live):
    name, key = live.database.account()

    async def main() -> list[int]:
        async with AsyncOpenAI(base_url=f"{live.gateway.url}/v1", api_key=key) as client:
            results = await asyncio.gather(
                *(
                    client.embeddings.create(model="auto", input=f"text number {i}")
                    for i in range(8)
                )
            )
        return [r.usage.prompt_tokens for r in results]

    assert asyncio.run(main()) == [3] * 8
    rows = wait_rows(live.database, name, 8)
    assert [r.prompt_tokens for r in rows] == [3] * 8


@pytest.mark.parametrize(
    "body, param",
    [
        ({}, "input"),
        ({"input": 5}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_bodies_are_400_naming_param_and_never_reach_the_upstream(live, body, param):
    _, key = live.database.account()
    before = len(live.sim.requests())
    client = live.gateway.client(key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/embeddings", body=body, cast_to=object)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert len(live.sim.requests()) == before


def test_tokens_per_minute_refuse_an_embedding_once_the_window_is_spent(live):
    _, key = live.database.account(tier="small")
    client = live.gateway.client(key)
    # Admitted while the window has room (one request may overshoot), settled to its 300 tokens
    first = client.embeddings.create(model="auto", input="word " * 300)
    assert first.usage.prompt_tokens == 300
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model="auto", input="short")
    assert "tokens per minute" in caught.value.message
