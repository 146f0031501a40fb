"""Rerank, score, tokenize and detokenize: vLLM's shapes, usage equal to the record."""

import pytest

from unit.devserver.wsgi import assert_vllm_error, last_record, post_json, simulator

DOCS = ["the cat sat", {"text": "a dog ran far"}, "cat"]


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_rerank_sorts_by_overlap_and_cuts_to_top_n(path):
    app = simulator()
    answer = post_json(app, path, {"query": "cat", "documents": DOCS, "top_n": 2})
    assert answer.status == 200
    body = answer.json()
    assert body["id"].startswith("rerank-") and body["model"] == "simulated/vllm-demo"
    assert [r["index"] for r in body["results"]] == [2, 0]
    assert body["results"][0] == {"index": 2, "document": {"text": "cat"}, "relevance_score": 1.0}
    assert all(0 <= r["relevance_score"] <= 1 for r in body["results"])
    # (1 + 3) + (1 + 4) + (1 + 1): the query with each document
    assert body["usage"] == {"total_tokens": 11}
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"], record["path"]) == (11, 0, path)


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_score_broadcasts_text_1_and_reports_usage(path):
    app = simulator()
    body = post_json(app, path, {"text_1": "a b", "text_2": ["a b", "c"]}).json()
    assert body["id"].startswith("score-") and body["object"] == "list"
    assert [(d["index"], d["object"], d["score"]) for d in body["data"]] == [
        (0, "score", 1.0),
        (1, "score", 0.0),
    ]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7, "completion_tokens": 0}
    assert last_record(app)["prompt_tokens"] == 7


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_tokenize_and_detokenize_round_the_simulators_words(prefix):
    app = simulator()
    body = post_json(app, f"{prefix}/tokenize", {"prompt": "the simulated server"}).json()
    assert body == {"count": 3, "max_model_len": 4096, "tokens": [4, 5, 7], "token_strs": None}
    back = post_json(app, f"{prefix}/detokenize", {"tokens": body["tokens"]}).json()
    assert back == {"prompt": "the simulated server"}
    chat = post_json(app, f"{prefix}/tokenize", {"messages": [{"role": "user", "content": "hi"}]})
    assert chat.json()["count"] == 4  # the chat template's 3, and the word
    assert all(r["prompt_tokens"] == r["completion_tokens"] == 0 for r in app.requests)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rerank", {"documents": ["a"]}),
        ("/rerank", {"query": "a", "documents": []}),
        ("/rerank", {"query": "a", "documents": [{"text": 1}]}),
        ("/rerank", {"query": "a", "documents": "a"}),
        ("/rerank", {"query": "a", "documents": ["a"], "top_n": -1}),
        ("/v1/rerank", {"query": "a", "documents": ["a"], "model": "missing/model"}),
        ("/score", {"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}),
        ("/score", {"text_1": "a"}),
        ("/score", {"text_1": [], "text_2": "a"}),
        ("/score", {"text_1": [1], "text_2": "a"}),
        ("/tokenize", {}),
        ("/tokenize", {"prompt": ["a"]}),
        ("/tokenize", {"messages": "hi"}),
        ("/detokenize", {"tokens": "1 2"}),
        ("/detokenize", {"tokens": [-1]}),
        ("/detokenize", {"tokens": [10**9]}),
    ],
)
def test_a_bad_body_is_a_4xx_in_vllms_shape(path, body):
    assert_vllm_error(post_json(simulator(), path, body))
