"""OpenTelemetry: one trace per workflow run, across every queue and worker. Off unless
``AGENTCHORD_OTEL_ENDPOINT`` is set (an OTLP/HTTP traces endpoint).

Celery task spans and the trace context in task headers come from
``opentelemetry-instrumentation-celery``; agentchord adds the run's root span, step attributes
(run id, step, role, tokens) and child spans for the model call and the registry I/O. A run's
trace context is kept in the registry, so steps dispatched after a park (by the API) or by the
watchdog still join the run's trace.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry import context, propagate, trace

from proj.settings import Settings

_lock = threading.Lock()
_configured_for: tuple[str, int] | None = None
tracer = trace.get_tracer("agentchord")


def setup_tracing(settings: Settings) -> bool:
    """Install the OTLP exporter and the Celery instrumentation once per process; False when
    tracing is off. Call it after a fork (prefork children each need their own exporter thread)."""
    global _configured_for
    if not settings.otel_endpoint:
        return False
    with _lock:
        # Per process: a forked child must build its own exporter (the parent's thread is gone).
        if _configured_for == (settings.otel_endpoint, os.getpid()):
            return True
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=settings.otel_batch_delay_ms))
        trace.set_tracer_provider(provider)
        instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
        _configured_for = (settings.otel_endpoint, os.getpid())
        return True


def current_traceparent() -> str:
    """The current trace context as a W3C ``traceparent`` (empty when not tracing)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def within_run_trace(traceparent: str | None) -> Iterator[None]:
    """Run the block in the run's trace unless the current span already belongs to it: a resume
    handled inside an HTTP request's trace, or the watchdog, still dispatches into the run's."""
    current = trace.get_current_span().get_span_context()
    parts = traceparent.split("-") if traceparent else []
    if len(parts) != 4 or (current.is_valid and f"{current.trace_id:032x}" == parts[1]):
        yield
        return
    token = context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of whatever is current (a no-op span when tracing is off)."""
    return tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (the Celery task span of a step)."""
    current = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)
