"""The upstream's answer as ours: a JSON body, an SSE relay, or its error mapped."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from .. import metrics, usage
from ..errors import UpstreamClientError, UpstreamError
from ..protocol.wire import text_tokens
from ..upstream.errors import error_message
from ..upstream.relay import relay_sse
from ..upstream.sse import StreamFormat, StreamResult, with_counted_usage
from .call import NOTHING, Call
from .inbound import Answer

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def complete(
    call: Call,
    response: Any,
    on_id: Callable[[str], None] | None = None,
    on_end: Callable[[dict[str, Any], usage.Usage], None] | None = None,
) -> Answer:
    """Non-streaming: pass the upstream JSON through, metering its (checked) usage;
    ``on_id`` hears the answer's id (a stored response is remembered before it is answered),
    ``on_end`` the answer and its usage (the response cache)."""
    try:
        content = response.content
    except Exception:  # noqa: BLE001 - a body cut short is a gateway error
        call.finish(502)
        raise UpstreamError("The inference endpoint closed the connection mid-response.") from None
    finally:
        response.close()
        call.outcome.received = time.perf_counter()
    kind = response.headers.get("Content-Type", "")
    if call.wire.text_answers and not kind.startswith("application/json"):
        return _text(call, response.status_code, content, kind)
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        call.finish(502)
        raise UpstreamError() from None
    if not isinstance(answer, dict):
        call.finish(502)
        raise UpstreamError()
    estimate = call.estimate
    used = usage.checked(
        call.wire.usage(answer),
        estimate.bounds,
        counted_prompt=estimate.billed_prompt,
        counted_completion=call.wire.count(answer),
    )
    if on_id is not None and isinstance(answer.get("id"), str):
        on_id(answer["id"])
    call.finish(response.status_code, used, ttft=time.perf_counter())
    if on_end is not None:
        on_end(answer, used)
    return Answer(response.status_code, content)


def _text(call: Call, status: int, content: bytes, kind: str) -> Answer:
    """A plain-text answer (a transcript as text, srt or vtt): its tokens counted."""
    text = content.decode("utf-8", "replace")
    used = usage.checked(
        None,
        call.estimate.bounds,
        counted_prompt=call.estimate.billed_prompt,
        counted_completion=text_tokens([text]),
    )
    call.finish(status, used, ttft=time.perf_counter())
    return Answer(status, content, kind or "text/plain")


def stream(
    call: Call,
    response: Any,
    fmt: StreamFormat,
    on_end: Callable[[StreamResult, usage.Usage], None] | None = None,
) -> Answer:
    """Streaming: relay SSE events as they arrive; meter when the stream ends (then
    ``on_end`` hears how it ended and its usage: the response cache)."""

    call.rt.track_stream()
    metrics.stream_started()

    def billed(result: StreamResult) -> usage.Usage:
        # Nothing generated and no usage: the upstream never started (no prompt billed).
        started = result.first_event_at is not None
        return usage.checked(
            result.usage,
            call.estimate.bounds,
            counted_prompt=call.estimate.billed_prompt if started else 0,
            counted_completion=result.relayed_tokens,
            floor=result.relayed_tokens,
        )

    def finished(result: StreamResult) -> None:
        call.rt.untrack_stream()
        metrics.stream_ended()
        used = NOTHING
        try:
            used = billed(result)
        finally:
            call.finish(
                200 if result.error is None else 502,
                used,
                ttft=result.first_event_at,
                disconnected=result.disconnected,
            )
        if on_end is not None:
            on_end(result, used)

    if fmt.usage_asked:
        fmt = with_counted_usage(fmt, lambda result: _pair(billed(result)))
    settings = call.rt.settings
    body = relay_sse(
        response,
        fmt,
        keepalive=settings.keepalive_interval,
        first_byte_timeout=settings.stream_first_byte_timeout,
        idle_timeout=settings.stream_idle_timeout,
        on_finish=finished,
    )
    if call.journal is not None:
        progress, prompt = body.progress, call.estimate.billed_prompt
        call.journal.progress = lambda: (
            prompt if progress.first_event_at is not None else 0,
            progress.relayed_tokens,
        )
    return Answer(200, body, "text/event-stream", SSE_HEADERS)


def _pair(used: usage.Usage) -> tuple[int, int]:
    return used.prompt, used.completion


def upstream_error(call: Call, response: Any) -> NoReturn:
    """An upstream 4xx keeps its message; 5xx and auth failures become 502."""
    try:
        content = response.content
    except Exception:  # noqa: BLE001
        content = b""
    finally:
        response.close()
    status = response.status_code
    call.finish(status)
    message, param = error_message(content)
    if status in (401, 403):
        raise UpstreamError(
            "The inference endpoint rejected the gateway's credentials; check the endpoint's "
            "upstream key."
        )
    if 400 <= status < 500:
        raise UpstreamClientError(
            status, message or f"The inference endpoint answered {status}.", param=param
        )
    raise UpstreamError(f"The inference endpoint answered {status}.")
