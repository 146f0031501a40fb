"""Request ids, ``Server-Timing``, and the one log line and metrics of every request.

Both are written when the response is closed — after the last byte of a stream — from the
request's :class:`~packet.exchange.Exchange` and, for a proxied request, the pipeline's
:class:`~packet.outcome.Outcome`. ``LOG_FORMAT=json`` writes the line as one JSON object
(python-json-logger); otherwise as ``key=value`` pairs. The line never holds a key, a prompt or
an upstream key: the caller appears as its account id and key display prefix.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from . import metrics, tracing
from .errors import RateLimitExceeded
from .exchange import Exchange, begin, current
from .outcome import Outcome
from .runtime import runtime

if TYPE_CHECKING:
    from .config import Settings

request_log = logging.getLogger("packet.request")
# As wide as the usage row's request_id column: a longer id is replaced, never stored cut.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
UNMATCHED = "unmatched"


def configure_logging(log_format: str, level: str) -> None:
    """The root handler's format (text or JSON) and the ``packet.*`` loggers' level."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    if log_format == "json":
        from pythonjsonlogger.orjson import OrjsonFormatter as JsonFormatter

        formatter: logging.Formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in root.handlers:
        handler.setFormatter(formatter)
    # No line shows a caller's file or thread: do not look them up for each record (the
    # request line is written once per request). The process id stays: gunicorn's lines show it.
    logging._srcfile = None
    logging.logThreads = logging.logMultiprocessing = False
    root.setLevel(logging.WARNING)
    logging.getLogger("packet").setLevel(level)


def _begin() -> None:
    environ = request.environ  # read as a dict: cheaper than the headers' view of it
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    exchange = begin(incoming if _REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}")
    exchange.method = environ.get("REQUEST_METHOD", "")


def _finish(response: Response, as_json: bool) -> Response:
    exchange = current()
    headers = response.headers
    headers["X-Request-ID"] = exchange.request_id
    environ = request.environ
    # Here, not when the request begins: the server span starts after this module's hook.
    exchange.trace_id = tracing.trace_id() or trace_id_from(environ.get("HTTP_TRACEPARENT"))
    outcome = exchange.outcome
    total = time.perf_counter() - exchange.started
    upstream = outcome.upstream_seconds() if outcome is not None else 0.0
    headers["Server-Timing"] = (
        f"gateway;dur={(total - upstream) * 1000:.2f}, upstream;dur={upstream * 1000:.2f}"
    )
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    address = runtime().auth_throttle.address(environ)
    status = response.status_code
    response.call_on_close(lambda: _closed(exchange, route, status, address, as_json))
    return response


def _closed(exchange: Exchange, route: str, status: int, address: str, as_json: bool) -> None:
    """The response is closed (a stream relayed to its end): its line and its metrics."""
    try:
        _record(exchange, route, status, address, as_json)
    except Exception:  # a broken log line must never break the worker
        logging.getLogger("packet.observability").exception("request record failed")


def _record(exchange: Exchange, route: str, status: int, address: str, as_json: bool) -> None:
    now = time.perf_counter()
    latency = now - exchange.started
    outcome = exchange.outcome or Outcome()
    if outcome.status is not None:
        status = outcome.status if outcome.stream else status
    error, principal = exchange.error, exchange.principal
    code = error.error_code if error is not None else ""
    if outcome.stream and outcome.status is not None and outcome.status >= 400:
        code = "upstream_error"
    model = outcome.model or ""
    upstream = outcome.upstream_seconds()
    overhead = max(0.0, latency - upstream)
    ttft = None
    if outcome.first_token is not None:
        ttft = outcome.first_token - exchange.started
    metrics.observe(
        route,
        model,
        status,
        code,
        latency,
        overhead,
        ttft if outcome.stream else None,
        outcome.prompt_tokens,
        outcome.completion_tokens,
    )
    if isinstance(error, RateLimitExceeded):
        tier = principal.tier if principal is not None else "none"
        metrics.rate_limited(tier, error.type if principal is not None else "address")
    if not request_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "message": "request",
        "request_id": exchange.request_id,
        "trace_id": exchange.trace_id,
        "client": address,
        "account_id": principal.account_id if principal is not None else None,
        "key_prefix": principal.key_prefix if principal is not None else None,
        "method": exchange.method,
        "route": route,
        "model": outcome.model,
        "endpoint": outcome.endpoint,
        "status": status,
        "error": code or None,
        "stream": outcome.stream,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "ttft_ms": None if ttft is None else round(ttft * 1000, 2),
        "latency_ms": round(latency * 1000, 2),
        "overhead_ms": round(overhead * 1000, 2),
        "disconnected": outcome.disconnected,
        "cache": outcome.cache,
        "batch": outcome.batch,
    }
    if as_json:
        request_log.info(fields)  # a dict message: its keys are the JSON object's (and cheaper)
    else:
        del fields["message"]
        request_log.info(
            " ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items() if v is not False)
        )


def trace_id_from(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header, when it is well-formed."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent)
    return match.group(1) if match else None


def init_app(app: Flask, settings: Settings) -> None:
    """Request ids, Server-Timing, the log line and metrics of every request."""
    as_json = settings.log_format == "json"
    app.before_request(_begin)
    app.after_request(lambda response: _finish(response, as_json))
