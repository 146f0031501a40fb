"""Request ids, the per-request log line and Prometheus metrics.

Metrics work with several gunicorn workers through prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set up by ``gunicorn.conf.py``).
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from .exchange import begin, current
from .runtime import runtime

request_log = logging.getLogger("packet.request")
# As wide as the usage row's request_id column: a longer id is replaced, never stored cut.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")

REQUESTS = Counter("packet_requests_total", "Requests answered", ["route", "status"])
LATENCY = Histogram(
    "packet_request_duration_seconds",
    "Time to the end of the response",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TOKENS = Counter("packet_tokens_total", "Tokens metered", ["kind"])
UPSTREAM_FAILURES = Counter("packet_upstream_failures_total", "Upstream failures", ["kind"])
USAGE_QUARANTINED = Counter(
    "packet_usage_rows_quarantined_total", "Usage rows the database refused (logged, not stored)"
)
LIMIT_STORAGE_ERRORS = Counter(
    "packet_limit_storage_errors_total", "Rate-limit storage calls that failed"
)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition, aggregated over every worker when in multiprocess mode."""
    if runtime().settings.metrics_multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


_PROMPT_TOKENS = TOKENS.labels("prompt")
_COMPLETION_TOKENS = TOKENS.labels("completion")


@functools.lru_cache(maxsize=1024)
def _series(route: str, status: int) -> tuple[Any, Any]:
    """The labelled children for a route and status, resolved once (labels() is not free)."""
    return REQUESTS.labels(route, str(status)), LATENCY.labels(route)


def observe(route: str, status: int, seconds: float, prompt: int = 0, completion: int = 0) -> None:
    """Count one finished request."""
    requests, latency = _series(route, status)
    requests.inc()
    latency.observe(seconds)
    if prompt:
        _PROMPT_TOKENS.inc(prompt)
    if completion:
        _COMPLETION_TOKENS.inc(completion)


def _begin() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    begin(incoming if _REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}")


def _finish(response: Response) -> Response:
    exchange = current()
    response.headers["X-Request-ID"] = exchange.request_id
    if exchange.metered:
        return response
    elapsed = time.perf_counter() - exchange.started
    route = request.url_rule.rule if request.url_rule else "unmatched"
    observe(route, response.status_code, elapsed)
    principal, error = exchange.principal, exchange.error
    request_log.info(
        "request_id=%s account=%s method=%s path=%s status=%s latency_ms=%d%s",
        exchange.request_id,
        principal.account_id if principal else "-",
        request.method,
        request.path,
        response.status_code,
        elapsed * 1000,
        f" error={error.error_code}" if error is not None else "",
    )
    return response


def init_app(app: Flask) -> None:
    """Request ids and the log line for every request; /metrics."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.register_blueprint(bp)


def log_request(usage: dict[str, Any]) -> None:
    """The one log line per metered request."""
    request_log.info(
        "request_id=%s account=%s key=%s model=%s route=%s stream=%s status=%s "
        "prompt_tokens=%s completion_tokens=%s cost_micros=%s ttft_ms=%s latency_ms=%s%s%s",
        usage["request_id"],
        usage["account_id"],
        usage["key_id"],
        usage["model"],
        usage["route"],
        usage["stream"],
        usage["status"],
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["cost_micros"],
        usage["ttft_ms"],
        usage["latency_ms"],
        " disconnected" if usage["client_disconnected"] else "",
        " cached" if usage.get("cached") else "",
    )
