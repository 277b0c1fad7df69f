"""Prometheus metrics: the API's /metrics, the worker's multiprocess server, queue depths."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from backend.observability import metrics
from backend.queues import WORK_QUEUES
from tests.conftest import ROOT, free_port
from tests.deploy.conftest import herald_env, run_python, stop_process
from tests.pipeline.servers import TcpProxy
from tests.processes import wait_for_port

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition; the parser rejects a malformed one."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


async def test_api_metrics_endpoint(client):
    before = (await client.get("/metrics")).text
    metrics.record_event_accepted("user_registered", "accepted")
    metrics.record_event_accepted("user_registered", "accepted")
    metrics.record_delivery("email", "sent", 3)
    metrics.observe_send_latency("email", 0.2)
    metrics.record_retry("sms")
    metrics.record_dead_letter("push")
    metrics.subscription_opened()
    response = await client.get("/metrics")
    metrics.subscription_closed()
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # text/plain; version=...
    after = response.text

    def grew(name: str, by: float, **labels: str) -> None:
        assert (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0) == by

    grew("herald_events_accepted_total", 2, type="user_registered", outcome="accepted")
    grew("herald_deliveries_total", 3, channel="email", status="sent")
    grew("herald_send_latency_seconds_count", 1, channel="email")
    grew("herald_send_latency_seconds_bucket", 1, channel="email", le="0.25")
    grew("herald_send_latency_seconds_bucket", 0, channel="email", le="0.1")
    grew("herald_delivery_retries_total", 1, channel="sms")
    grew("herald_dead_letters_total", 1, channel="push")
    grew("herald_open_subscriptions", 1)
    # The app declared the queues at start; their depths come from RabbitMQ.
    assert value(after, "herald_queue_stats_up") == 1
    for queue in WORK_QUEUES:
        assert value(after, "herald_queue_messages", queue=queue) is not None, queue
        assert value(after, "herald_queue_consumers", queue=queue) is not None, queue
    # Python's own process metrics ride along.
    assert value(after, "process_resident_memory_bytes")


def test_client_chosen_event_types_cannot_explode_the_series(monkeypatch):
    monkeypatch.setattr(metrics, "_event_types", set())
    monkeypatch.setattr(metrics, "MAX_EVENT_TYPE_LABELS", 2)
    for event_type in ("a-type", "b-type", "c-type", "d-type", "a-type"):
        metrics.record_event_accepted(event_type, "rejected")
    labels = {
        sample.labels["type"]
        for family in metrics.EVENTS_ACCEPTED.collect()
        for sample in family.samples
        if sample.labels.get("outcome") == "rejected"
    }
    assert {"a-type", "b-type", "other"} <= labels
    assert not {"c-type", "d-type"} & labels


def declare_test_queue(name: str, messages: int) -> None:
    from kombu import Connection

    with Connection(RABBITMQ_URL, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        # Expires on its own if the test dies before deleting it.
        channel.queue_declare(queue=name, durable=False, arguments={"x-expires": 60_000})
        producer = connection.Producer(channel)
        for _ in range(messages):
            producer.publish({"n": 1}, exchange="", routing_key=name, serializer="json")


def delete_test_queue(name: str) -> None:
    from kombu import Connection

    with Connection(RABBITMQ_URL) as connection:
        connection.channel().queue_delete(queue=name)


def test_queue_depths_from_rabbitmq_are_cached():
    name = f"herald.test.depth-{uuid.uuid4().hex[:8]}"
    missing = f"herald.test.missing-{uuid.uuid4().hex[:8]}"
    collector = metrics.QueueDepthCollector(RABBITMQ_URL, [name, missing], ttl=0.5)
    try:
        declare_test_queue(name, 3)
        assert collector.stats() == ({name: (3, 0)}, True)
        declare_test_queue(name, 1)
        assert collector.stats() == ({name: (3, 0)}, True)  # still cached
        time.sleep(0.6)
        assert collector.stats() == ({name: (4, 0)}, True)
        # A queue that does not exist is left out, and a passive declare never creates it.
        time.sleep(0.6)
        assert missing not in collector.stats()[0]
    finally:
        collector.close()
        delete_test_queue(name)


def test_a_broker_restart_between_scrapes_is_not_reported_as_down():
    # Through a proxy that drops every connection, as a RabbitMQ restart does, and accepts
    # new ones again: the kept connection is dead at the next scrape, RabbitMQ is not.
    proxy = TcpProxy(5672)
    name = f"herald.test.depth-{uuid.uuid4().hex[:8]}"
    collector = metrics.QueueDepthCollector(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/", [name], ttl=0.2, timeout=1.0
    )
    try:
        declare_test_queue(name, 2)
        assert collector.stats() == ({name: (2, 0)}, True)
        proxy.cut()
        proxy.restore()
        time.sleep(0.3)
        assert collector.stats() == ({name: (2, 0)}, True)
    finally:
        collector.close()
        delete_test_queue(name)


def test_queue_depth_probe_down_is_reported_not_raised():
    collector = metrics.QueueDepthCollector(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/", timeout=1.0
    )
    started = time.monotonic()
    text = "".join(f"{m.name} {s.value}\n" for m in collector.collect() for s in m.samples)
    assert time.monotonic() - started < 3
    assert "herald_queue_stats_up 0" in text
    assert "herald_queue_messages" not in text.replace("herald_queue_messages ", "")


# The worker's pool forks processes that count separately; this runs the same functions the
# worker runs (prepare, serve, then fork) with two forked children.
TWO_PROCESSES = """
import multiprocessing, os, sys
from celery import signals
from backend.config import Settings
from backend.observability.workers import setup_worker

settings = Settings(_env_file=None, worker_metrics_port=int(sys.argv[1]), rabbitmq_url=sys.argv[2])
setup_worker(settings)
directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
from backend.observability import metrics

def work(sent, clean_exit):
    metrics.record_delivery("email", "sent", sent)
    metrics.observe_send_latency("email", 0.02)
    metrics.record_retry("sms")
    metrics.subscription_opened()
    if clean_exit:  # what Celery's pool sends in a child that stops normally
        signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)

children = [
    multiprocessing.get_context("fork").Process(target=work, args=args)
    for args in ((3, True), (4, False))
]
for child in children:
    child.start()
for child in children:
    child.join()
print(directory, flush=True)
sys.stdin.read()
"""


def test_worker_metrics_add_up_the_pool_processes():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", TWO_PROCESSES, str(port), RABBITMQ_URL],
        cwd=ROOT,
        env=herald_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        directory = Path(process.stdout.readline().strip())
        assert directory.is_dir(), process.stderr.read() if process.stderr else ""
        assert len(list(directory.glob("*.db"))) >= 2  # one file set per child
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert value(text, "herald_deliveries_total", channel="email", status="sent") == 7
        assert value(text, "herald_send_latency_seconds_count", channel="email") == 2
        assert value(text, "herald_delivery_retries_total", channel="sms") == 2
        assert value(text, "herald_queue_stats_up") == 1
        # Live gauges count live processes only: the child that stopped cleanly left.
        assert value(text, "herald_open_subscriptions") == 1
        process.stdin.close()
        assert process.wait(10) == 0
        # The directory the worker created goes away with it.
        assert not directory.exists()
    finally:
        stop_process(process)  # type: ignore[arg-type]


def test_metrics_imported_too_early_is_refused():
    done = run_python(
        "-c",
        "import backend.observability.metrics\n"
        "from backend.observability.workers import prepare_multiprocess_dir\n"
        "prepare_multiprocess_dir()",
    )
    assert done.returncode != 0
    assert "imported before the multiprocess directory" in done.stderr


def test_herald_worker_serves_metrics_logs_json_and_cleans_up(engine):
    """A real `herald worker` (its broker unreachable, so it takes no one's tasks)."""
    port = free_port()
    env = herald_env(
        HERALD_RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        HERALD_WORKER_METRICS_PORT=str(port),
        HERALD_LOG_FORMAT="json",
        HERALD_LOG_LEVEL="INFO",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker", "--concurrency", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    celery_retrying = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "Cannot connect to amqp" in line:
                celery_retrying.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        wait_for_port(port, process, seconds=30)  # type: ignore[arg-type]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert value(text, "herald_queue_stats_up") == 0
        probe = subprocess.run(
            [sys.executable, "-m", "backend.observability.probe", "worker"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.returncode == 0, probe.stderr
        # Celery's own consumer logs through our handler once the pool is up.
        assert celery_retrying.wait(20), "".join(lines)
    finally:
        stop_process(process, seconds=20)  # type: ignore[arg-type]
    reader.join(5)
    assert process.stdout is not None
    assert "[queues]" not in process.stdout.read()  # no banner in JSON mode
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [e["message"] for e in entries]
    directory = next(
        Path(m.rsplit(" ", 1)[1]) for m in messages if m.startswith("pool processes write")
    )
    assert any("Cannot connect to amqp://guest:[REDACTED]@" in m for m in messages), messages
    assert not any(":guest@" in line for line in lines)
    assert not directory.exists()
    if process.returncode not in (0, -15):
        pytest.fail(f"worker exited with {process.returncode}")
