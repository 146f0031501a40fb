"""A cached answer in either form: JSON assembled from a stream's chunks, chunks split from a
JSON answer, and both rendered with a fresh id and time. Pure dicts and bytes.

An entry is what the cache stores: the route, the model, when it was stored, the usage it was
billed (prompt, completion), and the answer as it came — a JSON object (``json``) or a stream's
events (``events``: chat and text completion chunks without their head, or the Responses
stream's named events as ``[name, data]``).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ..upstream.sse import DONE, named_event

CHAT, TEXT, EMBEDDINGS, RESPONSES = "chat.completions", "completions", "embeddings", "responses"
CHUNKED = (CHAT, TEXT)
_HEAD = ("id", "object", "created", "model")
_PREFIX = {CHAT: "chatcmpl-", TEXT: "cmpl-", EMBEDDINGS: "embd-", RESPONSES: "resp_"}
_LOGPROB_LISTS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


def fresh_id(route: str) -> str:
    return _PREFIX.get(route, "") + uuid.uuid4().hex


# --- what is stored ---------------------------------------------------------------------------


def complete_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A finished stream's chunks as stored (head and usage-only chunk left out); None unless
    every choice it started has its ``finish_reason``."""
    kept, open_choices, finished = [], set(), set()
    for chunk in chunks:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            continue  # the usage chunk: the entry keeps its usage apart
        for choice in choices:
            if not isinstance(choice, dict):
                return None
            open_choices.add(choice.get("index", 0))
            if choice.get("finish_reason") is not None:
                finished.add(choice.get("index", 0))
        kept.append({k: v for k, v in chunk.items() if k not in _HEAD})
    return kept if kept and open_choices == finished else None


def complete_answer(route: str, answer: dict[str, Any]) -> bool:
    """A JSON answer worth storing: every choice finished (a response: completed)."""
    if route == RESPONSES:
        return answer.get("status") == "completed"
    if route == EMBEDDINGS:
        return isinstance(answer.get("data"), list)
    choices = answer.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)
    )


def complete_events(events: list[list[Any]]) -> bool:
    """A Responses stream worth storing: it ended with ``response.completed``."""
    return bool(events) and events[-1][0] == "response.completed"


# --- chunks → JSON ----------------------------------------------------------------------------


def _assemble_chat(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for part in chunk["choices"]:
            index = part.get("index", 0)
            choice = choices.setdefault(
                index,
                {"index": index, "message": {"role": "assistant", "content": ""}},
            )
            message, delta = choice["message"], part.get("delta") or {}
            for name, value in delta.items():
                if name == "tool_calls":
                    _merge_tools(message.setdefault("tool_calls", []), value or [])
                elif name == "role" or not isinstance(value, str):
                    message[name] = value if value is not None else message.get(name)
                else:
                    message[name] = (message.get(name) or "") + value
            _merge_logprobs(choice, part.get("logprobs"), "content")
            for name in ("finish_reason", "stop_reason"):
                if part.get(name) is not None:
                    choice[name] = part[name]
    result = []
    for index in sorted(choices):
        choice = choices[index]
        message = choice["message"]
        if message.get("tool_calls") and not message.get("content"):
            message["content"] = None
        result.append(
            {
                "index": index,
                "message": message,
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
            | ({"stop_reason": choice["stop_reason"]} if "stop_reason" in choice else {})
        )
    return result


def _merge_tools(calls: list[dict[str, Any]], deltas: list[Any]) -> None:
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index", len(calls))
        while len(calls) <= index:
            calls.append(
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
        call = calls[index]
        for name in ("id", "type"):
            if delta.get(name):
                call[name] = delta[name]
        function = delta.get("function") or {}
        for name in ("name", "arguments"):
            if function.get(name):
                call["function"][name] += function[name]


def _merge_logprobs(choice: dict[str, Any], logprobs: Any, *lists: str) -> None:
    if not isinstance(logprobs, dict):
        return
    merged = choice.setdefault("logprobs", {name: [] for name in lists})
    for name in lists:
        if isinstance(logprobs.get(name), list):
            merged.setdefault(name, []).extend(logprobs[name])


def _assemble_text(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for part in chunk["choices"]:
            index = part.get("index", 0)
            choice = choices.setdefault(
                index, {"index": index, "text": "", "logprobs": None, "finish_reason": None}
            )
            choice["text"] += part.get("text") or ""
            _merge_logprobs(choice, part.get("logprobs"), *_LOGPROB_LISTS)
            for name in ("finish_reason", "stop_reason"):
                if part.get(name) is not None:
                    choice[name] = part[name]
    return [choices[index] for index in sorted(choices)]


# --- JSON → chunks ----------------------------------------------------------------------------


def _split_chat(answer: dict[str, Any]) -> list[dict[str, Any]]:
    chunks = []
    for choice in answer.get("choices") or []:
        index, message = choice.get("index", 0), dict(choice.get("message") or {})
        role = message.pop("role", "assistant")
        first = {"role": role, "content": ""}
        chunks.append(_chat_chunk(index, first, None))
        delta = {k: v for k, v in message.items() if v is not None and v != []}
        if "tool_calls" in delta:
            delta["tool_calls"] = [
                {"index": i} | call for i, call in enumerate(delta["tool_calls"])
            ]
        if delta:
            chunks.append(_chat_chunk(index, delta, None, choice.get("logprobs")))
        chunks.append(_chat_chunk(index, {}, choice.get("finish_reason")))
    return chunks


def _chat_chunk(
    index: int, delta: dict[str, Any], finish: str | None, logprobs: Any = None
) -> dict[str, Any]:
    return {
        "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]
    }


def _split_text(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"choices": [dict(choice)]} for choice in answer.get("choices") or []]


# --- rendering --------------------------------------------------------------------------------


def usage_of(entry: dict[str, Any]) -> dict[str, int]:
    prompt, completion = entry["usage"]
    if entry["route"] == RESPONSES:
        return {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
        }
    if entry["route"] == EMBEDDINGS:
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def can_render(entry: dict[str, Any], stream: bool) -> bool:
    """Whether the entry answers a request in this form (a Responses stream needs its events)."""
    return not (stream and entry["route"] == RESPONSES and entry.get("events") is None)


def render_json(entry: dict[str, Any], now: float) -> bytes:
    """The answer as JSON, with a fresh id and creation time."""
    route, answer = entry["route"], entry.get("json")
    if route == RESPONSES:
        if answer is None:
            answer = entry["events"][-1][1]["response"]
        return orjson.dumps(_fresh_response(answer, now))
    if route == EMBEDDINGS:
        answer = dict(entry["json"])
        if "id" in answer:
            answer["id"] = fresh_id(route)
        if "created" in answer:
            answer["created"] = int(now)
        return orjson.dumps(answer)
    if answer is None:
        choices = (_assemble_chat if route == CHAT else _assemble_text)(entry["events"])
        answer = {"choices": choices, "usage": usage_of(entry)}
    kind = "chat.completion" if route == CHAT else "text_completion"
    head = {"id": fresh_id(route), "object": kind, "created": int(now), "model": entry["model"]}
    return orjson.dumps(head | {k: v for k, v in answer.items() if k not in _HEAD})


def render_sse(
    entry: dict[str, Any], now: float, *, include_usage: bool, continuous_usage: bool
) -> bytes:
    """The answer as the SSE body it was streamed as (each stored chunk one event), with a
    fresh id and creation time, the usage chunk only if asked, ``[DONE]`` at the end."""
    route = entry["route"]
    if route == RESPONSES:
        fresh = fresh_id(route)
        return b"".join(
            named_event(name, _fresh_event(data, fresh, now)) for name, data in entry["events"]
        )
    events = entry.get("events")
    if events is None:
        answer = entry["json"]
        events = _split_chat(answer) if route == CHAT else _split_text(answer)
    kind = "chat.completion.chunk" if route == CHAT else "text_completion"
    head = {"id": fresh_id(route), "object": kind, "created": int(now), "model": entry["model"]}
    out = []
    for chunk in events:
        body = head | chunk
        if not continuous_usage:
            body.pop("usage", None)
        out.append(b"data: " + orjson.dumps(body) + b"\n\n")
    if include_usage:
        out.append(
            b"data: " + orjson.dumps(head | {"choices": [], "usage": usage_of(entry)}) + b"\n\n"
        )
    out.append(DONE)
    return b"".join(out)


def _fresh_response(
    response: dict[str, Any], now: float, fresh: str | None = None
) -> dict[str, Any]:
    return response | {"id": fresh or fresh_id(RESPONSES), "created_at": int(now)}


def _fresh_event(data: dict[str, Any], fresh: str, now: float) -> dict[str, Any]:
    response = data.get("response")
    if isinstance(response, dict):
        return data | {"response": _fresh_response(response, now, fresh)}
    return data
