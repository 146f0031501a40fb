"""One batch line, sent through the real-time pipeline and written with its usage."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import gevent
import orjson

from .. import store
from ..auth import Principal
from ..errors import APIError, from_upstream
from ..gateway.inbound import BatchTerms, Inbound
from ..gateway.pipeline import serve
from ..protocol.batches import failed_line, output_line
from ..runtime import Runtime
from ..upstream.errors import UpstreamFailure
from .checks import ROUTES

log = logging.getLogger("packet.batch")

RETRIED = (429, 502, 503, 504)  # the endpoint is busy or away: wait and try again
RETRIES = 3
BACKOFF = 0.5


Outcome = tuple[str, dict[str, Any], dict[str, Any] | None]  # state, result line, usage row


@dataclass(frozen=True)
class Running:
    """A batch being worked on: who pays for it, and how."""

    id: str
    endpoint: str
    key_id: int | None
    principal: Principal


def record(
    owner: str,
    batch: Running,
    claimed: store.Claimed,
    outcome: Outcome,
) -> bool:
    """Write what came of the line (see :func:`answer`) with its usage row and price; False
    when another worker had taken the line over."""
    state, result, usage = outcome
    if usage is not None:
        usage["key_id"] = batch.key_id
    text = orjson.dumps(result).decode()
    return store.record_line(batch.id, claimed.line, owner, state, text, usage)


def answer(rt: Runtime, batch: Running, claimed: store.Claimed) -> Outcome:
    """Send the line (retrying while the endpoint is busy): its state, its output or error
    line, its usage row."""
    if batch.principal.balance_micros <= 0:
        message = "Your account balance is depleted: this request was not run."
        return "error", failed_line(claimed.custom_id, "insufficient_quota", message), None
    priority = rt.settings.batch.priority
    raw = claimed.body.encode()
    if priority is not None:
        raw = orjson.dumps(orjson.loads(raw) | {"priority": priority})
    request_id = f"{batch.id}-{claimed.line}"
    route = ROUTES[batch.endpoint]
    attempt = 0
    while True:
        terms = BatchTerms(batch.id, rt.settings.batch.discount_ppm)
        inbound = Inbound(batch.principal, route, raw, request_id, time.perf_counter(), batch=terms)
        try:
            reply = serve(rt, inbound)
        except (APIError, UpstreamFailure) as exc:
            error = exc if isinstance(exc, APIError) else from_upstream(exc)
            if error.code in RETRIED and attempt < RETRIES:
                gevent.sleep(BACKOFF * 2**attempt)
                attempt += 1
                continue
            line = output_line(claimed.custom_id, error.code, request_id, error.body())
            return "error", line, terms.usage
        except Exception:
            log.exception("batch %s line %d failed", batch.id, claimed.line)
            message = "The gateway could not run this request."
            return "error", failed_line(claimed.custom_id, "internal_error", message), terms.usage
        assert isinstance(reply.body, bytes)  # batch lines are never streamed
        body = orjson.loads(reply.body)
        return "done", output_line(claimed.custom_id, reply.status, request_id, body), terms.usage
