"""The request path for completions: validate → route → admit → proxy/stream → meter.

Authentication already ran (a ``before_request`` hook). The request is counted for the tier's
requests/min here, with its tokens, at admission (:func:`packet.limits.admit`, once validation
and routing give its estimate). This module turns a validated body into an upstream call with
failover, relays the answer (JSON or SSE) and hands the outcome to the meter, exactly once per
request, whatever happens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Response, g, request
from marshmallow import Schema

from . import limits, observability, usage
from .auth import Principal
from .body import read_body
from .errors import (
    APIError,
    InvalidRequest,
    UpstreamClientError,
    UpstreamError,
    from_upstream,
    from_validation,
)
from .journal import OpenCall
from .limits import TokenReservation
from .metering import Hold, cost_micros
from .runtime import Runtime, runtime
from .schemas import errors_for
from .upstream.discovery import EndpointState, Target
from .upstream.errors import (
    BadGateway,
    Blocked,
    ConnectFailed,
    Dropped,
    TimedOut,
    UpstreamFailure,
    error_message,
)
from .upstream.relay import StreamResult, relay_sse

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_RETRY_STATUSES = (502, 503)


def parse_body(schema: Schema) -> dict[str, Any]:
    """The client's JSON object, validated; 400 naming the offending param otherwise."""
    raw = read_body(runtime().settings.request_read_timeout)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send valid JSON with "
            "'Content-Type: application/json'."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    errors = errors_for(schema, body)
    if errors:
        raise from_validation(errors)
    return body


def endpoint_triples(rt: Runtime, principal: Principal) -> list[tuple[str, str | None, str]]:
    """The caller's endpoints (url, upstream key, label), or the shared pool when it has none."""
    if principal.endpoints:
        return [(e.base_url, e.upstream_key, e.base_url) for e in principal.endpoints]
    return [(url, None, f"shared pool #{i + 1}") for i, url in enumerate(rt.settings.upstreams)]


def requested_model(body: dict[str, Any]) -> str | None:
    """The model the client named, or None for ``"auto"``/omitted."""
    model = body.get("model")
    return None if model in (None, "", "auto") else model


NOTHING = usage.Usage(0, 0)


@dataclass
class Call:
    """Everything known about one proxied request, carried to its end."""

    rt: Runtime
    principal: Principal
    route: str
    request_id: str
    started: float
    target: Target
    stream: bool
    hold: Hold
    tokens: TokenReservation | None
    prompt_estimate: int
    bounds: usage.Bounds
    journal: OpenCall | None = None
    holds_endpoint: bool = False
    done: bool = False

    def begin(self) -> None:
        """Note the call in the worker's journal, so a worker killed mid-call bills it."""
        self.journal = self.rt.meter.begin(
            {
                "request_id": self.request_id,
                "account_id": self.principal.account_id,
                "key_id": self.principal.key_id,
                "endpoint_url": self.target.state.label,
                "model": self.target.model,
                "route": self.route,
                "stream": self.stream,
            },
            self.hold,
        )

    def finish(
        self,
        status: int,
        used: usage.Usage = NOTHING,
        *,
        ttft: float | None = None,
        disconnected: bool = False,
    ) -> None:
        """Release the endpoint, settle tokens and money, queue the usage row. Once."""
        if self.done:
            return
        self.done = True
        if self.holds_endpoint:
            self.target.state.inflight -= 1
        self.rt.limits.settle(self.tokens, used.total)
        latency = time.perf_counter() - self.started
        model = self.target.model
        row = {
            "request_id": self.request_id,
            "account_id": self.principal.account_id,
            "key_id": self.principal.key_id,
            "endpoint_url": self.target.state.label,
            "model": model,
            "route": self.route,
            "stream": self.stream,
            "status": status,
            "prompt_tokens": used.prompt,
            "completion_tokens": used.completion,
            "total_tokens": used.total,
            "cost_micros": cost_micros(self.rt.settings, model, used.prompt, used.completion),
            "ttft_ms": None if ttft is None else int((ttft - self.started) * 1000),
            "latency_ms": int(latency * 1000),
            "client_disconnected": disconnected,
            "usage_source": used.source,
        }
        self.rt.meter.record(row, self.hold, self.journal)
        observability.observe(self.route, status, latency, used.prompt, used.completion)


def handle(schema: Schema, route: str, upstream_path: str) -> Response:
    """Serve one chat or text completion request."""
    rt = runtime()
    principal: Principal = g.principal
    body = parse_body(schema)
    states = rt.discovery.states(endpoint_triples(rt, principal))
    target = rt.discovery.route(states, requested_model(body), principal.default_model)

    stream = body.get("stream") is True
    body_bytes = len(request.get_data(cache=True))
    prompt_estimate = usage.prompt_estimate(body_bytes)
    context = usage.context_length(
        target.state.models.get(target.model), rt.settings.default_max_model_len
    )
    tokens = limits.admit(
        usage.reservation(body, prompt_estimate, context, rt.settings.default_max_tokens)
    )
    try:
        hold = rt.meter.reserve(
            principal, target.model, prompt_estimate, usage.completion_cap(body, context)
        )
    except BaseException:
        rt.limits.settle(tokens, 0)
        raise

    client_options = body.get("stream_options") or {}
    if stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    headers = {
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        "X-Request-ID": g.request_id,
    }
    call = Call(
        rt,
        principal,
        route,
        g.request_id,
        g.started,
        target,
        stream,
        hold,
        tokens,
        prompt_estimate,
        usage.bounds(body, body_bytes, context),
    )
    g.metered = True
    call.begin()
    try:
        call.target, response = _send(rt, states, target, body, headers, upstream_path, stream)
        call.holds_endpoint = True
        if call.target is not target and call.journal is not None:
            call.journal.fields["endpoint_url"] = call.target.state.label
        if response.status_code >= 400:
            return _upstream_error(call, response)
        if stream:
            return _stream(call, response, client_options)
        return _complete(call, response)
    except BaseException as exc:
        call.finish(_failure_status(exc))  # does nothing when the call already finished
        raise


def _failure_status(exc: BaseException) -> int:
    """The status a request that never got an upstream answer is recorded with."""
    if isinstance(exc, UpstreamFailure):
        return from_upstream(exc).code
    return exc.code if isinstance(exc, APIError) else 500


def _send(
    rt: Runtime,
    states: list[EndpointState],
    target: Target,
    body: dict[str, Any],
    headers: dict[str, str],
    path: str,
    stream: bool,
) -> tuple[Target, Any]:
    """POST to the target; before the first byte, fail over to another ready replica.

    A connection failure or a 502/503 answer marks the endpoint down for the cool-off and the
    request goes to the next replica serving the same model, each endpoint at most once and
    at most ``PACKET_FAILOVER_ATTEMPTS`` in all. Without one, the last failure is the answer.
    A connection dropped without an answer (a replica that just died, or one that speaks no
    HTTP) also moves on, but does not cool the endpoint off: a dead one will refuse the next
    connection. A timeout is not retried: the endpoint may be doing the work. A new connection
    the endpoint policy refuses (its name now resolves to a denied address) marks the endpoint
    blocked and moves on too; nothing was sent.
    """
    body["model"] = target.model
    try:
        payload = orjson.dumps(body)
    except TypeError:  # orjson refuses what it parsed when nested more than 254 deep
        raise InvalidRequest("The request body is nested too deeply.") from None
    tried: list[EndpointState] = []
    while True:
        state = target.state
        state.inflight += 1
        try:
            response = rt.client.post(
                f"{state.url}{path}", payload, headers | state.headers(), stream=stream
            )
        except (ConnectFailed, Dropped, Blocked) as exc:
            response, failure = None, exc
            kind = "connect" if isinstance(exc, ConnectFailed) else "dropped"
            kind = "blocked" if isinstance(exc, Blocked) else kind
        except BaseException as exc:
            state.inflight -= 1
            observability.UPSTREAM_FAILURES.labels(_failure_kind(exc)).inc()
            raise
        else:
            if response.status_code not in _RETRY_STATUSES:
                return target, response
            kind = f"http_{response.status_code}"
            failure = BadGateway(f"answered {response.status_code}", response.status_code)
        observability.UPSTREAM_FAILURES.labels(kind).inc()
        if isinstance(failure, Blocked):
            rt.discovery.mark_blocked(state, str(failure))
        elif not isinstance(failure, Dropped):
            rt.discovery.mark_down(state, str(failure))
        tried.append(state)
        retry = (
            rt.discovery.pick(states, target.model, exclude=tried)
            if len(tried) < rt.settings.failover_attempts
            else None
        )
        if retry is None:
            if response is not None:
                return target, response
            state.inflight -= 1
            raise failure
        state.inflight -= 1
        if response is not None:
            response.close()
        target = retry


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimedOut):
        return "timeout"
    return "bad_answer" if isinstance(exc, BadGateway) else "other"


def _complete(call: Call, response: Any) -> Response:
    """Non-streaming: pass the upstream JSON through, metering its (checked) usage."""
    try:
        content = response.content
    except Exception:  # noqa: BLE001 - a body cut short is a gateway error
        call.finish(502)
        raise UpstreamError("The inference endpoint closed the connection mid-response.") from None
    finally:
        response.close()
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        call.finish(502)
        raise UpstreamError() from None
    if not isinstance(answer, dict):
        call.finish(502)
        raise UpstreamError()
    used = usage.checked(
        answer.get("usage"),
        call.bounds,
        counted_prompt=call.prompt_estimate,
        counted_completion=usage.count_answer(answer),
    )
    call.finish(response.status_code, used, ttft=time.perf_counter())
    return Response(content, status=response.status_code, mimetype="application/json")


def _stream(call: Call, response: Any, client_options: dict[str, Any]) -> Response:
    """Streaming: relay SSE events as they arrive; meter when the stream ends."""

    call.rt.track_stream()

    def finished(result: StreamResult) -> None:
        call.rt.untrack_stream()
        used = NOTHING
        try:
            # Nothing generated and no usage: the upstream never started (no prompt billed).
            started = result.first_event_at is not None
            used = usage.checked(
                result.usage,
                call.bounds,
                counted_prompt=call.prompt_estimate if started else 0,
                counted_completion=result.relayed_tokens,
                floor=result.relayed_tokens,
            )
        finally:
            call.finish(
                200 if result.error is None else 502,
                used,
                ttft=result.first_event_at,
                disconnected=result.disconnected,
            )

    settings = call.rt.settings
    body = relay_sse(
        response,
        include_usage=bool(client_options.get("include_usage")),
        continuous_usage=bool(client_options.get("continuous_usage_stats")),
        keepalive=settings.keepalive_interval,
        first_byte_timeout=settings.stream_first_byte_timeout,
        idle_timeout=settings.stream_idle_timeout,
        on_finish=finished,
    )
    if call.journal is not None:
        progress, prompt = body.progress, call.prompt_estimate
        call.journal.progress = lambda: (
            prompt if progress.first_event_at is not None else 0,
            progress.relayed_tokens,
        )
    return Response(body, status=200, mimetype="text/event-stream", headers=SSE_HEADERS)


def _upstream_error(call: Call, response: Any) -> Response:
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
