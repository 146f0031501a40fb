"""GET /metrics: every series in Prometheus's text format, summed over the workers."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from ..errors import InvalidAPIKey
from ..runtime import runtime

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition, aggregated over every worker; behind ``PACKET_METRICS_TOKEN``."""
    settings = runtime().settings
    token = settings.metrics_token
    if token is not None:
        sent = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(sent, f"Bearer {token}".encode()):
            raise InvalidAPIKey("Send PACKET_METRICS_TOKEN as 'Authorization: Bearer ...'.")
    return Response(exposition(settings.metrics_multiprocess_dir), mimetype=CONTENT_TYPE_LATEST)


def exposition(multiprocess_dir: str | None) -> bytes:
    """Every series, summed over the workers when they share a multiprocess directory."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
