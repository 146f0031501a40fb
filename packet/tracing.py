"""OpenTelemetry traces, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

On: Flask's instrumentation makes a server span per request (joining a client's
``traceparent``), requests' makes a span per discovery probe, and the gateway adds spans for
auth, limits, routing, the upstream call and metering, and sends the W3C ``traceparent`` to the
endpoint with the upstream call (vLLM joins the trace when started with
``--otlp-traces-endpoint``). Spans go out over OTLP/HTTP in batches, from a background
greenlet; the exporter reads the standard ``OTEL_*`` variables itself (service name, headers).

Off (the default): nothing of OpenTelemetry is imported, and :func:`span`, :func:`inject` and
:func:`trace_id` return at once, so the hot path does not call into it at all.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from .config import Settings

_tracer: Any = None
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


def init_app(app: Flask, settings: Settings) -> None:
    """Instrument the app and requests when an OTLP endpoint is configured (once per process)."""
    global _tracer
    if not settings.otlp_endpoint or _tracer is not None:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    FlaskInstrumentor().instrument_app(app, excluded_urls="/metrics,/health")
    RequestsInstrumentor().instrument(tracer_provider=provider)
    _tracer = trace.get_tracer("packet")


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A child span of the current one around a step of the request (nothing when off)."""
    if _tracer is None:
        return _NOTHING
    manager: AbstractContextManager[Any] = _tracer.start_as_current_span(
        name, attributes=attributes
    )
    return manager


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to upstream headers."""
    if _tracer is not None:
        from opentelemetry.propagate import inject as propagate

        propagate(headers)


def trace_id() -> str | None:
    """The current trace's id as 32 hex digits, for the log line (None when off)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def shutdown() -> None:
    """Send the spans still batched (a worker's exit)."""
    if _tracer is not None:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            provider.shutdown()
