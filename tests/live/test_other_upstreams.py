"""Upstreams that are not vLLM (llama.cpp's server, Ollama, LM Studio, TGI), played by the
simulated vLLM with its switches: no /health route, no usage in streams, sparse model cards,
any model name accepted. Chat, streams and completions still work and are metered honestly."""

from __future__ import annotations

import openai
import pytest
import requests
from helpers import get, rid, row_of, until

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"
HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def live_env():
    return {"PACKET_DISCOVERY_INTERVAL": "0.2", "PACKET_WARMUP_TIMEOUT": "1"}


@pytest.fixture(scope="module")
def plain(module_launcher):
    """A server with no /health, no usage in streams and cards with only id/object/owner."""
    return module_launcher.sim("--no-health", "--no-stream-usage", "--sparse-cards", health=404)


@pytest.fixture(scope="module")
def echoing(module_launcher):
    """A server that takes any model name and echoes it back."""
    return module_launcher.sim("--echo-model", "--sparse-cards")


@pytest.fixture(scope="module")
def account(live, plain):
    name, key = live.database.account(endpoints=(plain.url,))
    return name, key, live.gateway.client(key)


def test_models_are_listed_with_the_fields_openai_clients_read(live, account):
    _, key, client = account
    [model] = client.models.list().data
    assert model.id == SIM_MODEL and model.object == "model" and isinstance(model.created, int)
    assert model.owned_by
    state = get(live.gateway, key, "/health").json()
    assert [e["status"] for e in state["endpoints"]] == ["healthy"]


def test_chat_is_metered_as_reported(live, plain, account):
    name, _, client = account
    headers = rid()
    answer = client.chat.completions.create(
        model="auto", messages=HI, max_tokens=4, extra_headers=headers
    )
    assert answer.usage.completion_tokens == 4
    row = row_of(live.database, name, headers["X-Request-ID"])
    seen = plain.request(headers["X-Request-ID"])
    assert (row.prompt_tokens, row.completion_tokens) == (seen["prompt_tokens"], 4)
    assert row.usage_source == "upstream"


@pytest.mark.parametrize("route", ["chat", "completions"])
def test_streams_without_usage_are_metered_from_the_relayed_tokens(live, plain, account, route):
    name, _, client = account
    headers = rid()
    if route == "chat":
        stream = client.chat.completions.create(
            model="auto",
            messages=HI,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        stream = client.completions.create(
            model="auto", prompt="once upon", max_tokens=6, stream=True, extra_headers=headers
        )
        chunks = list(stream)
        text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert len(text.split()) == 6
    row = row_of(live.database, name, headers["X-Request-ID"])
    seen = plain.request(headers["X-Request-ID"])
    assert row.usage_source == "counted" and row.completion_tokens == seen["completion_tokens"]
    # The prompt billed is counted from its text (about four characters a token, plus what a
    # chat template adds per message), not from the size of the JSON body around it.
    expected_prompt = 4 + 3 if route == "chat" else 3
    assert row.prompt_tokens == expected_prompt and row.stream
    reports = [c.usage for c in chunks if c.usage is not None]
    if route == "chat":  # asked for: the usage it is billed, made by the gateway
        [usage] = reports
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            row.prompt_tokens,
            row.completion_tokens,
        )
        assert not chunks[-1].choices and chunks[-1].id == chunks[0].id
    else:  # not asked for: none
        assert reports == []


def test_completions_work_plain(account):
    _, _, client = account
    answer = client.completions.create(model="auto", prompt="once upon a time", max_tokens=3)
    assert len(answer.choices[0].text.split()) == 3


def test_a_stream_cut_short_is_metered_from_what_was_relayed(live, plain, account):
    name, key, _ = account
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"} | rid()
    body = {"messages": HI, "stream": True, "max_tokens": 200, "x_sim_token_delay": 0.02}
    with requests.post(
        f"{live.gateway.url}/v1/chat/completions",
        json=body,
        headers=headers,
        stream=True,
        timeout=30,
    ) as answer:
        events = 0
        for line in answer.iter_lines():
            events += line.startswith(b"data: ")
            if events == 4:
                break
    row = row_of(live.database, name, headers["X-Request-ID"])
    seen = plain.request(headers["X-Request-ID"])
    assert seen["disconnected"] and row.client_disconnected
    assert row.completion_tokens == seen["completion_tokens"] >= 3


def test_health_is_asked_once_and_readiness_follows_the_models(plain, account):
    _, _, client = account
    before = plain.probes()
    client.models.list()
    until(lambda: plain.probes()["models"] >= before["models"] + 3, "three more model probes")
    # asked twice in all: by the test harness waiting for the 404, and once by the gateway
    assert plain.probes()["health"] == before["health"] == 2


def test_a_server_echoing_any_model_is_routed_by_its_card(live, echoing):
    _, key = live.database.account(endpoints=(echoing.url,))
    client = live.gateway.client(key)
    answer = client.chat.completions.create(model="auto", messages=HI, max_tokens=2)
    assert answer.model == SIM_MODEL
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2)
    assert caught.value.code == "model_not_found" and SIM_MODEL in caught.value.message


def test_a_server_without_health_that_is_not_there_is_a_503_not_a_hang(live):
    _, key = live.database.account(endpoints=("http://127.0.0.1:9",))
    client = live.gateway.client(key)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="auto", messages=HI, max_tokens=2)
    assert caught.value.status_code == 503
    assert "No running inference endpoint found" in caught.value.message
