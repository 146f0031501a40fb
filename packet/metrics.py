"""The Prometheus series and the functions that feed them (``GET /metrics`` is
:mod:`packet.api.metrics`). No Flask here: the gateway and the batch worker feed them too.

Metrics work with several gunicorn workers through prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set up and removed by ``gunicorn.conf.py``). Labels stay bounded:
``route`` is the route template (``/v1/responses/<id>``, never a path; ``unmatched`` for an
unknown path), ``model`` the model served (empty when none was chosen), ``endpoint`` an endpoint's
id (``pool-N`` for the shared pool), never its URL.

Other parts of the gateway call :func:`cache_lookup` and :func:`batch_line` when they answer
from the response cache or finish a batch line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import gevent
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from .upstream.discovery import EndpointState

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

REQUESTS = Counter(
    "packet_requests_total", "Requests answered", ["route", "model", "status", "code"]
)
LATENCY = Histogram(
    "packet_request_duration_seconds",
    "Time to the end of the response (the last byte of a stream)",
    ["route", "model"],
    buckets=_SECONDS,
)
TTFT = Histogram(
    "packet_time_to_first_token_seconds",
    "Time to a stream's first event",
    ["route", "model"],
    buckets=_SECONDS,
)
OVERHEAD = Histogram(
    "packet_gateway_overhead_seconds",
    "Time of a request not spent waiting on the upstream",
    ["route"],
    buckets=_OVERHEAD,
)
TOKENS = Counter("packet_tokens_total", "Tokens metered", ["model", "kind"])
STREAMS = Gauge("packet_streams_in_flight", "Streams being relayed", multiprocess_mode="livesum")
ENDPOINT_INFLIGHT = Gauge(
    "packet_endpoint_requests_in_flight",
    "Requests in flight per endpoint",
    ["endpoint"],
    multiprocess_mode="livesum",
)
ENDPOINT_STATE = Gauge(
    "packet_endpoint_state",
    "Endpoint state at the last check: 0 down, 1 healthy, 2 loading, 3 starting, 4 blocked, "
    "5 cooling off",
    ["endpoint"],
    multiprocess_mode="livemostrecent",
)
RATE_LIMITED = Counter(
    "packet_rate_limited_total",
    "Requests refused with 429, by tier and kind (requests, tokens, address)",
    ["tier", "kind"],
)
UPSTREAM_FAILURES = Counter("packet_upstream_failures_total", "Upstream failures", ["kind"])
DATABASE_ERRORS = Counter(
    "packet_database_errors_total", "Requests answered 503 for the database", ["kind"]
)
LIMIT_STORAGE_ERRORS = Counter(
    "packet_limit_storage_errors_total",
    "Rate-limit storage (Redis) calls that failed, by exception",
    ["kind"],
)
USAGE_QUARANTINED = Counter(
    "packet_usage_rows_quarantined_total", "Usage rows the database refused (logged, not stored)"
)
CACHE_LOOKUPS = Counter(
    "packet_cache_lookups_total", "Response cache lookups by result (hit, miss)", ["result"]
)
BATCH_LINES = Counter("packet_batch_lines_total", "Batch lines finished, by status", ["status"])

STATE_CODES = {"down": 0, "healthy": 1, "loading": 2, "starting": 3, "blocked": 4}
COOLING_OFF = 5


@functools.lru_cache(maxsize=4096)
def _series(route: str, model: str, status: int, code: str) -> tuple[Any, Any]:
    """The labelled children of one kind of answer, resolved once (labels() is not free)."""
    return REQUESTS.labels(route, model, str(status), code), LATENCY.labels(route, model)


@functools.lru_cache(maxsize=1024)
def _tokens(model: str) -> tuple[Any, Any]:
    return TOKENS.labels(model, "prompt"), TOKENS.labels(model, "completion")


@functools.lru_cache(maxsize=256)
def _overhead(route: str) -> Any:
    return OVERHEAD.labels(route)


@functools.lru_cache(maxsize=4096)
def _ttft(route: str, model: str) -> Any:
    return TTFT.labels(route, model)


def observe(
    route: str,
    model: str,
    status: int,
    code: str,
    seconds: float,
    overhead: float,
    ttft: float | None = None,
    prompt: int = 0,
    completion: int = 0,
) -> None:
    """Count one finished request."""
    requests, latency = _series(route, model, status, code)
    requests.inc()
    latency.observe(seconds)
    _overhead(route).observe(overhead)
    if ttft is not None:
        _ttft(route, model).observe(ttft)
    if prompt or completion:
        prompt_tokens, completion_tokens = _tokens(model)
        if prompt:
            prompt_tokens.inc(prompt)
        if completion:
            completion_tokens.inc(completion)


def rate_limited(tier: str, kind: str) -> None:
    RATE_LIMITED.labels(tier, kind).inc()


def database_error(kind: str) -> None:
    DATABASE_ERRORS.labels(kind).inc()


def limit_storage_error(exc: BaseException) -> None:
    LIMIT_STORAGE_ERRORS.labels(type(exc).__name__).inc()


def cache_lookup(hit: bool) -> None:
    """Hook for the response cache: one lookup, answered from the cache or not."""
    CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()


def batch_line(status: str) -> None:
    """Hook for the batch worker: one line finished (``completed``, ``failed``, …)."""
    BATCH_LINES.labels(status).inc()


@functools.lru_cache(maxsize=4096)
def _endpoint_inflight(endpoint: str) -> Any:
    return ENDPOINT_INFLIGHT.labels(endpoint)


def endpoint_inflight(state: EndpointState) -> None:
    """The endpoint's requests in flight in this worker (sampled: see :func:`sample`)."""
    if state.ident:
        _endpoint_inflight(state.ident).set(state.inflight)


def sample(known: Callable[[], Iterable[EndpointState]], every: float = 1.0) -> None:
    """Set the in-flight gauges every ``every`` seconds, for ever (a worker's greenlet): a
    gauge written on every request's start and end cost two shared-memory writes each."""
    while True:
        gevent.sleep(every)
        for state in known():
            endpoint_inflight(state)


def endpoint_state(state: EndpointState, cooling_off: bool = False) -> None:
    """The endpoint's state, after a probe or a failed request."""
    if state.ident:
        code = COOLING_OFF if cooling_off else STATE_CODES.get(state.status, 0)
        ENDPOINT_STATE.labels(state.ident).set(code)


def stream_started() -> None:
    STREAMS.inc()


def stream_ended() -> None:
    STREAMS.dec()
