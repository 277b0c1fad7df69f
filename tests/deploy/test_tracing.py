"""Tracing: off by default and free; with an OTLP endpoint, spans reach a real HTTP server."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import start_live_server, stop_live_server
from tests.deploy.conftest import run_python


def spans_of(requests) -> list[tuple[str, str, object]]:
    """(service name, span name, span) of every exported span."""
    found = []
    for path, headers, body in requests:
        assert path == "/v1/traces"
        lowered = {key.lower(): value for key, value in headers.items()}
        assert lowered.get("content-type") == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    found.append((attributes.get("service.name"), span.name, span))
    return found


def test_api_requests_are_exported_over_otlp_http(engine, http_recorder):
    endpoint, recorder = http_recorder
    server = start_live_server({"HERALD_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        response = httpx.post(f"{server.url}/graphql", json={"query": "{ __typename }"}, timeout=10)
        assert response.status_code == 200
        httpx.get(f"{server.url}/metrics", timeout=10)

        def graphql_span(requests):
            return [s for s in spans_of(requests) if s[1] == "POST /graphql"]

        found = recorder.wait(graphql_span, seconds=10)
        assert found, spans_of(recorder.requests)
    finally:
        stop_live_server(server)
    service, _, span = found[0]
    assert service == "herald-api"
    assert len(span.trace_id) == 16 and any(span.trace_id)
    # Probes (the server's start-up polling of /healthz) and scrapes are not traced.
    names = {name for _, name, _ in spans_of(recorder.requests)}
    assert not any("healthz" in n or "metrics" in n for n in names), names


# The mutation's trace continues in the worker through the message it publishes: aio-pika
# writes the trace context into the message headers, where Celery's instrumentation reads it.
PUBLISH = """
import asyncio, sys
from backend.broker import Broker, celery_task_message
from backend.config import get_settings
from backend.observability.tracing import configure_tracing, span
import aio_pika

async def main(queue):
    settings = get_settings()
    assert configure_tracing(settings, "herald-test")
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, arguments={"x-expires": 60000})
        broker = Broker(settings.rabbitmq_url)
        await broker.start()
        with span("sendEvent") as _:
            from opentelemetry import trace
            trace_id = trace.get_current_span().get_span_context().trace_id
            await broker.publish(queue, celery_task_message("events.dispatch", kwargs={}))
        await broker.close()
        message = await (await channel.get_queue(queue)).get(timeout=5)
        await message.ack()
        await channel.queue_delete(queue)
        print(f"{trace_id:032x}", message.headers.get("traceparent"))

asyncio.run(main(sys.argv[1]))
"""


def test_published_task_messages_carry_the_trace(http_recorder):
    endpoint, _ = http_recorder
    done = run_python(
        "-c", PUBLISH, f"herald.test.trace-{uuid.uuid4().hex[:8]}", HERALD_OTLP_ENDPOINT=endpoint
    )
    assert done.returncode == 0, done.stderr
    trace_id, traceparent = done.stdout.split()
    assert traceparent.startswith(f"00-{trace_id}-")


def test_tracing_off_imports_no_sdk():
    # (redis-py imports opentelemetry.sdk.metrics for its own optional metrics; the trace
    # SDK, the exporter and the instrumentations are ours to keep out.)
    done = run_python(
        "-c",
        "import sys\n"
        "from backend.app import create_app\n"
        "from backend.observability import tracing\n"
        "from tests.conftest import make_settings\n"
        "create_app(make_settings())\n"
        "with tracing.span('x'):\n"
        "    pass\n"
        "assert not tracing.is_enabled()\n"
        "heavy = ('opentelemetry.sdk.trace', 'opentelemetry.exporter',\n"
        "         'opentelemetry.instrumentation')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_span_helper_is_free_when_off():
    from backend.observability import tracing

    assert not tracing.is_enabled()
    with tracing.span("smtp.send", channel="email"):
        await asyncio.sleep(0)
    assert tracing.current_trace_ids() is None
