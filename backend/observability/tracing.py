"""OpenTelemetry tracing, off unless ``HERALD_OTLP_ENDPOINT`` is set.

With an endpoint (``http://otel-collector:4318``), spans go out over OTLP/HTTP in batches:
the API's requests (FastAPI), its publishes to RabbitMQ (aio-pika, which carries the trace
context in the message headers), the worker's tasks (Celery, which picks that context up, so a
delivery's spans join the mutation's trace), and outgoing HTTP calls (httpx: the auth service,
SMS and push providers). :func:`span` wraps what no library instruments (an SMTP send).

Off, nothing from the SDK is imported and :func:`span` costs one global read, so the request
path pays nothing for tracing it does not use. The batch processor's schedule follows the
SDK's own environment variables (``OTEL_BSP_SCHEDULE_DELAY`` and friends).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from backend.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# Probes and scrapes every few seconds would drown the traces that matter.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_provider: TracerProvider | None = None
_lock = threading.Lock()


def traces_endpoint(base: str) -> str:
    """The OTLP/HTTP traces URL for a collector's base URL (``.../v1/traces`` is appended, as
    the OTLP spec does for ``OTEL_EXPORTER_OTLP_ENDPOINT``, unless it is there already)."""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def configure_tracing(settings: Settings, service_name: str) -> bool:
    """Start exporting spans to ``settings.otlp_endpoint`` as ``service_name`` and instrument
    httpx, aio-pika and Celery. Returns whether tracing is on; a second call is a no-op (one
    tracer provider per process)."""
    global _provider
    if not settings.otlp_endpoint:
        return False
    with _lock:
        if _provider is not None:
            return True
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {
                "service.name": service_name,
                "service.namespace": "herald",
                "deployment.environment.name": settings.environment.value,
            }
        )
        provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=traces_endpoint(settings.otlp_endpoint), timeout=5)
        # The batch processor restarts its export thread in forked children (prefork pool).
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
        AioPikaInstrumentor().instrument(tracer_provider=provider)
        CeleryInstrumentor().instrument(tracer_provider=provider)
        atexit.register(provider.shutdown)
        _provider = provider
    log.info("tracing on: exporting spans to %s as %s", settings.otlp_endpoint, service_name)
    return True


def instrument_app(app: FastAPI) -> None:
    """Trace the API's HTTP requests and WebSocket connections (not probes or scrapes)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # The per-message send/receive spans would add two spans per subscription event.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["send", "receive"],
    )


def is_enabled() -> bool:
    """Whether this process exports spans."""
    return _provider is not None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A span around work no library instruments (an SMTP conversation); free when off."""
    if _provider is None:
        yield
        return
    with _provider.get_tracer("herald").start_as_current_span(name, attributes=attributes):
        yield


def _carrier(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """A message's headers as a propagation carrier (AMQP may hand strings back as bytes)."""
    return {
        k: v.decode() if isinstance(v, bytes) else v
        for k, v in (headers or {}).items()
        if isinstance(v, str | bytes)
    }


@contextmanager
def task_span(task: str, headers: Sequence[Mapping[str, Any] | None]) -> Iterator[None]:
    """``run/<task>``, the span Celery's instrumentation gives a task, for work that runs the
    task for the messages with ``headers`` outside Celery (the dispatch consumer): a child of
    the trace the first message carries (its publisher's), linked to the others'."""
    if _provider is None:
        yield
        return
    from opentelemetry import propagate, trace

    contexts = [propagate.extract(_carrier(h)) for h in headers]
    links = [
        trace.Link(context)
        for extracted in contexts[1:]
        if (context := trace.get_current_span(extracted).get_span_context()).is_valid
    ]
    with _provider.get_tracer("herald").start_as_current_span(
        f"run/{task}",
        context=contexts[0] if contexts else None,
        kind=trace.SpanKind.CONSUMER,
        links=links,
    ):
        yield


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, for log lines; None when off or outside one."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
