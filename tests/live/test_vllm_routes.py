"""vLLM's own routes through the real gateway, over raw HTTP: rerank, score, tokenize,
detokenize — at the root and under /v1, authenticated, counted and metered as reported."""

from __future__ import annotations

import pytest
from helpers import rid, row_of, send

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"
DOCS = ["the cat sat on the mat", "gateways relay tokens", "a cat and a hat"]


@pytest.fixture(scope="module")
def live_env():
    return {"PACKET_TIERS": '{"tiny": {"rpm": 3, "tpm": 100000}}'}


def post(live, key, path, body, headers=None):
    return send(live.gateway, key, "POST", path, json=body, headers=headers)


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank"])
def test_rerank_orders_documents_and_is_metered_as_reported(live, path):
    name, key = live.database.account()
    headers = rid()
    answer = post(live, key, path, {"query": "cat", "documents": DOCS, "top_n": 2}, headers)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == 2 and {r["index"] for r in results} == {0, 2}
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    reported = answer.json()["usage"]["total_tokens"]
    seen = live.sim.request(headers["X-Request-ID"])
    # /rerank and /v1/rerank are one route upstream; /v2/rerank is Cohere's shape
    assert seen["path"] == ("/v2/rerank" if path == "/v2/rerank" else "/v1/rerank")
    assert seen["body"]["model"] == SIM_MODEL
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == ("rerank", reported, 0)
    assert reported == seen["prompt_tokens"] > 0


@pytest.mark.parametrize("path", ["/v1/score", "/score"])
def test_score_pairs_and_is_metered_as_reported(live, path):
    name, key = live.database.account()
    headers = rid()
    answer = post(live, key, path, {"text_1": "a cat", "text_2": DOCS}, headers)
    assert answer.status_code == 200, answer.text
    assert [d["index"] for d in answer.json()["data"]] == [0, 1, 2]
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert row.route == "score"
    assert row.prompt_tokens == answer.json()["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_tokenize_and_detokenize_charge_nothing(live, prefix):
    name, key = live.database.account()
    headers = rid()
    tokens = post(live, key, f"{prefix}/tokenize", {"prompt": "hello big world"}, headers)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["count"] == 3
    text = post(live, key, f"{prefix}/detokenize", {"tokens": tokens.json()["tokens"]})
    assert text.status_code == 200 and len(text.json()["prompt"].split()) == 3
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.route, row.prompt_tokens, row.completion_tokens, row.cost_micros) == (
        "tokenize",
        0,
        0,
        0,
    )


def test_root_routes_need_a_key_and_count_against_requests_per_minute(live):
    assert send(live.gateway, None, "POST", "/tokenize", json={"prompt": "x"}).status_code == 401
    wrong = send(live.gateway, "pk_live_nope", "POST", "/rerank", json={"query": "x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    _, key = live.database.account(tier="tiny")
    statuses = [post(live, key, "/tokenize", {"prompt": "x"}).status_code for _ in range(3)]
    refused = post(live, key, "/v1/score", {"text_1": "a", "text_2": "b"})
    assert statuses == [200, 200, 200] and refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/rerank", {"documents": DOCS}, "query"),
        ("/v1/rerank", {"query": "q", "documents": []}, "documents"),
        ("/v2/rerank", {"query": "q", "documents": DOCS, "top_n": -1}, "top_n"),
        ("/detokenize", {"tokens": ["a"]}, "tokens"),
        ("/tokenize", {"prompt": 5}, "prompt"),
    ],
)
def test_bad_bodies_are_400_naming_param_and_never_reach_the_upstream(live, path, body, param):
    _, key = live.database.account()
    before = len(live.sim.requests())
    answer = post(live, key, path, body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert len(live.sim.requests()) == before
