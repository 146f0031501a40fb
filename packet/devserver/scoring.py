"""vLLM's rerank (``/rerank``, ``/v1/rerank``, ``/v2/rerank``) and score (``/score``,
``/v1/score``), with a toy relevance: the word overlap (Jaccard) of the two texts, in [0, 1].

Each (query, document) or (text_1, text_2) pair is one model input of both texts' words.
Rerank reports ``{"total_tokens": N}``, score ``{"prompt_tokens": N, "total_tokens": N,
"completion_tokens": 0}``, N summing the pairs; the record's prompt_tokens is N, completion 0.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from packet.devserver import tokens
from packet.devserver.protocol import ApiError, new_id, respond, usage
from packet.devserver.request import (
    MODEL,
    Check,
    an_object,
    check_fields,
    invalid,
    is_int,
    read_json,
    served_model,
)

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator

RERANK_FIELDS: dict[str, Check] = {
    "model": MODEL,
    "top_n": (is_int, "a valid integer", lambda v: None if v >= 0 else "must be at least 0."),
}


def rerank(app: Simulator, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The documents by relevance to the query, best first, cut to ``top_n`` (0: all)."""
    body = an_object(read_json(environ))
    check_fields(body, RERANK_FIELDS, "")
    model = served_model(body, app.settings)
    query = body.get("query")
    if not isinstance(query, str):
        invalid("query", "Input should be a valid string")
    documents = _documents(body.get("documents"))
    total = sum(tokens.count(query) + tokens.count(doc) for doc in documents)
    app.record(environ, body, model=model, prompt_tokens=total, finished=True)
    scores = [overlap(query, doc) for doc in documents]
    ranked = sorted(range(len(documents)), key=lambda i: -scores[i])  # ties: in order
    results = [
        {"index": i, "document": {"text": documents[i]}, "relevance_score": scores[i]}
        for i in ranked
    ]
    top_n = body.get("top_n") or len(results)
    answer = {
        "id": new_id("rerank-"),
        "model": model,
        "usage": {"total_tokens": total},
        "results": results[:top_n],
    }
    return respond(start_response, 200, answer)


def score(app: Simulator, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """One score per pair: 1 to 1, 1 to N (``text_1`` broadcast), or N to N."""
    body = an_object(read_json(environ))
    check_fields(body, {"model": MODEL}, "")
    model = served_model(body, app.settings)
    firsts, seconds = _texts(body, "text_1"), _texts(body, "text_2")
    if len(firsts) == 1:
        firsts = firsts * len(seconds)
    if len(firsts) != len(seconds):
        raise ApiError(400, "text_1 and text_2 must have the same length, or text_1 one text.")
    pairs = list(zip(firsts, seconds, strict=True))
    total = sum(tokens.count(a) + tokens.count(b) for a, b in pairs)
    app.record(environ, body, model=model, prompt_tokens=total, finished=True)
    answer = {
        "id": new_id("score-"),
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": [
            {"index": i, "object": "score", "score": overlap(a, b)}
            for i, (a, b) in enumerate(pairs)
        ],
        "usage": usage(total, 0),
    }
    return respond(start_response, 200, answer)


def overlap(first: str, second: str) -> float:
    """Shared words over all the words of both (case-blind); 0 when both are empty."""
    a, b = set(first.lower().split()), set(second.lower().split())
    return len(a & b) / len(a | b) if a | b else 0.0


def _documents(value: Any) -> list[str]:
    """Strings, or ``{"text": ...}`` objects; at least one."""
    if not isinstance(value, list):
        invalid("documents", "Input should be a valid list")
    if not value:
        raise ApiError(400, "documents must not be empty.", param="documents")
    texts = []
    for i, doc in enumerate(value):
        text = doc.get("text") if isinstance(doc, dict) else doc
        if not isinstance(text, str):
            invalid(f"documents.{i}", "Input should be a string or an object with a text")
        texts.append(text)
    return texts


def _texts(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        invalid(name, "Input should be a string or a list of strings")
    if not value:
        raise ApiError(400, f"{name} must not be empty.", param=name)
    return value


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/rerank"): rerank,
    ("POST", "/v1/rerank"): rerank,
    ("POST", "/v2/rerank"): rerank,
    ("POST", "/score"): score,
    ("POST", "/v1/score"): score,
}
