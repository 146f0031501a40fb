"""POST to a replica of the target, failing over before the first byte."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import requests

from .. import metrics
from ..errors import InvalidRequest
from ..runtime import Runtime
from ..upload import MultipartBody
from ..upstream.discovery import EndpointState, Target
from ..upstream.errors import (
    BadGateway,
    Blocked,
    ConnectFailed,
    Dropped,
    TimedOut,
    UpstreamFailure,
)

_RETRY_STATUSES = (502, 503)
# The JSON body (the model set on the way), a multipart upload, or no body.
Payload = dict[str, Any] | MultipartBody | None


def send(
    rt: Runtime,
    states: list[EndpointState],
    target: Target,
    body: Payload,
    headers: dict[str, str],
    path: str,
    *,
    stream: bool,
    method: str = "POST",
) -> tuple[Target, requests.Response]:
    """Send to the target; before the first byte, fail over to another ready replica.

    A connection failure or a 502/503 answer marks the endpoint down for the cool-off and the
    request goes to the next replica serving the same model, each endpoint at most once and
    at most ``PACKET_FAILOVER_ATTEMPTS`` in all. Without one, the last failure is the answer.
    A connection dropped without an answer (a replica that just died, or one that speaks no
    HTTP) also moves on, but does not cool the endpoint off: a dead one will refuse the next
    connection. A timeout is not retried: the endpoint may be doing the work. A new connection
    the endpoint policy refuses (its name now resolves to a denied address) marks the endpoint
    blocked and moves on too; nothing was sent.
    """
    payload = body if isinstance(body, MultipartBody) else _payload(body, target.model)
    tried: list[EndpointState] = []
    while True:
        if isinstance(payload, MultipartBody):
            payload.rewind()  # another replica gets the upload from its first byte
        state = target.state
        url, sent_headers = f"{state.url}{path}", headers | state.headers()
        outcome = _attempt(rt, state, method, url, payload, sent_headers, stream)
        if not isinstance(outcome, _Failed):
            return target, outcome
        _note(rt, state, outcome.failure)
        tried.append(state)
        retry = (
            rt.discovery.pick(states, target.model, exclude=tried)
            if len(tried) < rt.settings.failover_attempts
            else None
        )
        if retry is None and outcome.response is not None:
            return target, outcome.response  # the last replica's 502/503 is the answer
        state.inflight -= 1
        if retry is None:
            raise outcome.failure
        if outcome.response is not None:
            outcome.response.close()
        target = retry


@dataclass
class _Failed:
    """An attempt that may move on to another replica, with the 502/503 answer if there was
    one (it is the answer when no replica is left)."""

    failure: UpstreamFailure
    response: requests.Response | None = None


def _payload(body: dict[str, Any] | None, model: str) -> bytes:
    """The client's body as sent upstream: unchanged but for the resolved model."""
    if body is None:
        return b""
    body["model"] = model
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson refuses what it parsed when nested more than 254 deep
        raise InvalidRequest("The request body is nested too deeply.") from None


def _attempt(
    rt: Runtime,
    state: EndpointState,
    method: str,
    url: str,
    payload: bytes | MultipartBody,
    headers: dict[str, str],
    stream: bool,
) -> requests.Response | _Failed:
    """One attempt. From here the endpoint counts the request in flight; the caller releases it
    (at once when it moves on, when the call finishes otherwise)."""
    state.inflight += 1
    try:
        response = rt.client.send(method, url, payload, headers, stream=stream)
    except (ConnectFailed, Dropped, Blocked) as exc:
        return _Failed(exc)
    except BaseException as exc:
        state.inflight -= 1
        metrics.UPSTREAM_FAILURES.labels(failure_kind(exc)).inc()
        raise
    if response.status_code in _RETRY_STATUSES:
        status = response.status_code
        return _Failed(BadGateway(f"answered {status}", status), response)
    return response


def _note(rt: Runtime, state: EndpointState, failure: UpstreamFailure) -> None:
    """Count the failure; cool a failed endpoint off (a dropped connection does not: a dead
    endpoint refuses the next one), or mark it blocked by the endpoint policy."""
    if isinstance(failure, Blocked):
        kind = "blocked"
        rt.discovery.mark_blocked(state, str(failure))
    elif isinstance(failure, Dropped):
        kind = "dropped"
    else:
        kind = f"http_{failure.status}" if isinstance(failure, BadGateway) else "connect"
        rt.discovery.mark_down(state, str(failure))
    metrics.UPSTREAM_FAILURES.labels(kind).inc()


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimedOut):
        return "timeout"
    return "bad_answer" if isinstance(exc, BadGateway) else "other"
