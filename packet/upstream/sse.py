"""Server-Sent Events from vLLM, read as the meter needs them: usage and tokens per event,
and events stripped back to what the client asked for. Pure bytes and dicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from ..envelope import error_body

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


@dataclass
class StreamResult:
    """What a finished relay knows: the upstream's last usage report (as sent: the meter
    decides whether to believe it), the tokens relayed, and how the stream ended."""

    usage: Any = None
    relayed_tokens: int = 0
    head: dict[str, Any] | None = None  # the first chunk's id, object, created and model
    first_event_at: float | None = None
    done: bool = False
    disconnected: bool = False
    error: str | None = None


@dataclass(frozen=True)
class StreamFormat:
    """How one API family's stream reads: ``inspect`` notes an event's usage and tokens and
    returns the bytes to relay (None drops it); ``error_event`` writes an in-band error;
    ``end`` closes a stream the gateway had to end itself (OpenAI's ``[DONE]``, or nothing
    where the family has no such line)."""

    inspect: Callable[[bytes, StreamResult], bytes | None]
    error_event: Callable[[str, str], bytes]
    end: bytes = DONE
    usage_asked: bool = False  # the client asked for a final usage chunk


def error_event(message: str, code: str = "upstream_error") -> bytes:
    """An in-band SSE error, the way vLLM and the openai SDK expect it after a 200."""
    return b"data: " + orjson.dumps(error_body(message, "server_error", code)) + b"\n\n"


def named(event: bytes) -> tuple[bytes, Any]:
    """A named event's name and parsed ``data`` (None when it is not a JSON object)."""
    name, data = b"", None
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip()
        elif line.startswith(b"data:"):
            data = line[5:].strip() if data is None else data + b"\n" + line[5:].strip()
    if data is None:
        return name, None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return name, None
    return name, obj if isinstance(obj, dict) else None


def read_named(event: bytes, result: StreamResult) -> tuple[bytes, Any]:
    """:func:`named`, noting the time of the stream's first event that carries data."""
    name, data = named(event)
    if data is not None and result.first_event_at is None:
        result.first_event_at = time.perf_counter()
    return name, data


def named_event(name: str, data: dict[str, Any]) -> bytes:
    """One named event (Responses and Anthropic streams)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def count_tokens(obj: dict[str, Any]) -> int:
    """Tokens carried by one chunk, for upstreams that send no usage (one per non-empty delta)."""
    count = 0
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text:
            count += 1
    return count


def inspect_event(
    event: bytes, result: StreamResult, *, include_usage: bool, continuous_usage: bool
) -> bytes | None:
    """Record what the event says about usage; return the bytes to relay, or None to drop it.

    The gateway always asks vLLM for usage (on every chunk), so chunks are stripped back to
    what the client asked for: no usage-only final chunk unless ``include_usage``, no per-chunk
    usage unless ``continuous_usage``.
    """
    if not event.startswith(b"data:"):
        return event
    payload = event[5:].strip()
    if payload == b"[DONE]":
        result.done = True
        return event
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return event
    if not isinstance(obj, dict):
        return event
    if result.first_event_at is None:
        result.first_event_at = time.perf_counter()
        result.head = {key: obj.get(key) for key in _HEAD}
    if obj.get("error"):
        error = obj["error"]
        result.error = (
            error.get("message", "upstream error") if isinstance(error, dict) else str(error)
        )
        return event
    result.relayed_tokens += count_tokens(obj)
    usage = obj.get("usage")
    if usage is not None:
        result.usage = usage
        if not obj.get("choices"):
            return event if include_usage else None
        if not continuous_usage:
            del obj["usage"]
            return b"data: " + orjson.dumps(obj) + b"\n\n"
    return event


_HEAD = ("id", "object", "created", "model")


def chat_format(*, include_usage: bool, continuous_usage: bool) -> StreamFormat:
    """Chat and text completion streams, stripped back to the usage the client asked for."""
    return StreamFormat(
        partial(inspect_event, include_usage=include_usage, continuous_usage=continuous_usage),
        error_event,
        usage_asked=include_usage,
    )


def with_counted_usage(
    fmt: StreamFormat, counted: Callable[[StreamResult], tuple[int, int]]
) -> StreamFormat:
    """``fmt``, for an upstream that may send no usage (llama.cpp, Ollama, servers that ignore
    ``stream_options``): a client that asked for the usage chunk still gets one before
    ``[DONE]``, with the (prompt, completion) tokens ``counted`` says it is billed."""

    def inspect(event: bytes, result: StreamResult) -> bytes | None:
        ended = result.done
        kept = fmt.inspect(event, result)
        if kept is not None and result.done and not ended and result.usage is None:
            prompt, completion = counted(result)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            chunk = (result.head or {}) | {"choices": [], "usage": usage}
            return b"data: " + orjson.dumps(chunk) + b"\n\n" + kept
        return kept

    return StreamFormat(inspect, fmt.error_event, fmt.end, fmt.usage_asked)


CHAT_FORMATS = {
    (include, continuous): chat_format(include_usage=include, continuous_usage=continuous)
    for include in (False, True)
    for continuous in (False, True)
}
