"""Prometheus metrics, all named ``herald_*``, and the ways processes expose them.

The rest of the code calls the small functions below (``record_delivery(channel, status)``)
and never prometheus_client itself, so names and label sets live in this one module.

- The API serves :func:`metrics_endpoint` at ``/metrics`` from its own process (compose runs
  one uvicorn process per container and scales with replicas).
- A Celery worker's prefork pool counts in several processes; the worker runs in
  prometheus_client's multiprocess mode (see :mod:`backend.observability.workers`) and
  :func:`build_registry` then adds up every process's samples.
- Queue depths come from :class:`QueueDepthCollector`, which asks RabbitMQ passively at scrape
  time and caches the answer for a few seconds.

In multiprocess mode ``PROMETHEUS_MULTIPROC_DIR`` must be set before this module is imported:
prometheus_client picks each metric's storage when the metric is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from backend.config import Settings
from backend.queues import DEAD_LETTER_QUEUE, WORK_QUEUES

log = logging.getLogger(__name__)

EVENTS_ACCEPTED = Counter(
    "herald_events_accepted",
    "Events handed to Herald, by event type and outcome "
    "(accepted, scheduled, duplicate, rejected).",
    ["type", "outcome"],
)
DELIVERIES = Counter(
    "herald_deliveries",
    "Delivery status changes, by channel and the status reached "
    "(queued, sent, skipped, failed, dead, retrying).",
    ["channel", "status"],
)
SEND_LATENCY = Histogram(
    "herald_send_latency_seconds",
    "Time one provider call took (SMTP send, SMS webhook, push service, Redis publish).",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RETRIES = Counter(
    "herald_delivery_retries",
    "Deliveries scheduled for another attempt after a transient failure, by channel.",
    ["channel"],
)
DEAD_LETTERS = Counter(
    "herald_dead_letters",
    "Deliveries given up on and recorded as dead letters, by channel.",
    ["channel"],
)
CAMPAIGN_RUNS = Counter(
    "herald_campaign_runs",
    "Campaign runs started, by kind (scheduled, manual, test).",
    ["kind"],
)
CAMPAIGN_RECIPIENTS = Counter(
    "herald_campaign_recipients",
    "Users fanned out by campaign runs (one per user per run, whatever the channels).",
)
OPEN_SUBSCRIPTIONS = Gauge(
    "herald_open_subscriptions",
    "GraphQL subscriptions open on this API process.",
    multiprocess_mode="livesum",
)
LIVE_HUB_FAILURES = Counter(
    "herald_live_hub_failures",
    "Failures of this API process's live hub (its Redis subscription), each followed by a "
    "restart with backoff, by reason: connection (Redis went away or refused) or error "
    "(anything unexpected, logged with its trace). Subscribers resync from their cursor.",
    ["reason"],
)

# Event types come from clients. Past this many distinct values the rest share one label
# value, so a client sending made-up types cannot blow up the number of series.
MAX_EVENT_TYPE_LABELS = 200
OTHER = "other"
_event_types: set[str] = set()
_event_types_lock = threading.Lock()


def _event_type_label(event_type: str) -> str:
    if event_type in _event_types:
        return event_type
    with _event_types_lock:
        if len(_event_types) < MAX_EVENT_TYPE_LABELS:
            _event_types.add(event_type)
            return event_type
    return OTHER


def record_event_accepted(event_type: str, outcome: str) -> None:
    """Count one event handed to Herald: ``outcome`` is ``accepted``, ``scheduled``,
    ``duplicate`` (idempotency key seen before) or ``rejected``."""
    _events_counter(_event_type_label(event_type), outcome).inc()


@functools.cache
def _events_counter(type_label: str, outcome: str) -> Any:
    # At most MAX_EVENT_TYPE_LABELS types x four outcomes; labels() on every event was 1% of
    # a sendEvent's CPU.
    return EVENTS_ACCEPTED.labels(type=type_label, outcome=outcome)


@functools.cache
def _deliveries_counter(channel: str, status: str) -> Any:
    # A handful of (channel, status) pairs, counted once per delivery: labels() each time was
    # a measurable part of a campaign page.
    return DELIVERIES.labels(channel=channel, status=status)


def record_delivery(channel: str, status: str, count: int = 1) -> None:
    """Count deliveries of ``channel`` reaching ``status`` (``queued``, ``sent``, ``skipped``,
    ``failed``, ``dead``, ``retrying``)."""
    if count:
        _deliveries_counter(channel, status).inc(count)


def observe_send_latency(channel: str, seconds: float) -> None:
    """Record how long one provider call for ``channel`` took."""
    SEND_LATENCY.labels(channel=channel).observe(seconds)


def record_retry(channel: str, count: int = 1) -> None:
    """Count deliveries of ``channel`` scheduled for another attempt."""
    if count:
        RETRIES.labels(channel=channel).inc(count)


def record_dead_letter(channel: str, count: int = 1) -> None:
    """Count deliveries of ``channel`` that were given up on."""
    if count:
        DEAD_LETTERS.labels(channel=channel).inc(count)


def record_campaign_run(kind: str) -> None:
    """Count a campaign run started (``scheduled``, ``manual`` or ``test``)."""
    CAMPAIGN_RUNS.labels(kind=kind).inc()


def record_campaign_recipients(count: int) -> None:
    """Count users a campaign run's page handed to dispatch."""
    if count:
        CAMPAIGN_RECIPIENTS.inc(count)


def subscription_opened() -> None:
    """A GraphQL subscription started on this process (pair with :func:`subscription_closed`
    in a ``finally``)."""
    OPEN_SUBSCRIPTIONS.inc()


def subscription_closed() -> None:
    """A GraphQL subscription on this process ended."""
    OPEN_SUBSCRIPTIONS.dec()


def live_hub_failed(reason: str) -> None:
    """The live hub's read loop (or its connecting) failed and will start again: ``reason``
    is ``connection`` (Redis went away or refused) or ``error`` (an unexpected exception)."""
    LIVE_HUB_FAILURES.labels(reason=reason).inc()


class QueueDepthCollector(Collector):
    """``herald_queue_messages`` and ``herald_queue_consumers`` for each queue, from a passive
    declare (which never creates a queue), plus ``herald_queue_stats_up``.

    Answers are cached for ``ttl`` seconds, so several scrapers (Prometheus, healthchecks)
    cost RabbitMQ one round of declares at most that often; the connection is kept between
    scrapes and reopened after an error. A queue that does not exist yet is left out.
    """

    def __init__(
        self,
        url: str,
        queues: Sequence[str] = (*WORK_QUEUES, DEAD_LETTER_QUEUE),
        *,
        ttl: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.queues = tuple(queues)
        self.ttl = ttl
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: Any = None
        self._fetched_at = float("-inf")
        self._stats: dict[str, tuple[int, int]] = {}
        self._up = False

    def collect(self) -> Iterable[Metric]:
        stats, up = self.stats()
        messages = GaugeMetricFamily(
            "herald_queue_messages",
            "Messages ready in each RabbitMQ queue (cached a few seconds).",
            labels=["queue"],
        )
        consumers = GaugeMetricFamily(
            "herald_queue_consumers", "Consumers on each RabbitMQ queue.", labels=["queue"]
        )
        for queue, (ready, consuming) in sorted(stats.items()):
            messages.add_metric([queue], ready)
            consumers.add_metric([queue], consuming)
        yield messages
        yield consumers
        yield GaugeMetricFamily(
            "herald_queue_stats_up",
            "1 when RabbitMQ answered the last queue-depth probe, 0 when it did not.",
            value=1 if up else 0,
        )

    def stats(self) -> tuple[dict[str, tuple[int, int]], bool]:
        """(queue → (ready messages, consumers), whether RabbitMQ answered), at most ``ttl``
        seconds old."""
        with self._lock:
            if time.monotonic() - self._fetched_at >= self.ttl:
                try:
                    self._stats, self._up = self._probe(), True
                except Exception as exc:  # a scrape must never fail on this
                    log.debug("queue depth probe failed: %s", exc)
                    self._close()
                    self._stats, self._up = {}, False
                self._fetched_at = time.monotonic()
            return dict(self._stats), self._up

    def _probe(self) -> dict[str, tuple[int, int]]:
        """:meth:`_fetch`, once more on a new connection when the kept one fails: a broker
        restarted since the last scrape closed it, and is not down for that."""
        kept = self._connection is not None
        try:
            return self._fetch()
        except Exception:
            if not kept:
                raise
            self._close()
            return self._fetch()

    def _fetch(self) -> dict[str, tuple[int, int]]:
        from kombu import Connection

        if self._connection is None:
            # No heartbeats: nothing pumps this connection between scrapes.
            connection = Connection(self.url, connect_timeout=self.timeout, heartbeat=0)
            # No waiting between tries: a scrape must answer fast; the next one retries.
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=self.timeout
            )
            self._connection = connection
        connection = self._connection
        result: dict[str, tuple[int, int]] = {}
        channel = connection.channel()
        try:
            for queue in self.queues:
                try:
                    ok = channel.queue_declare(queue=queue, passive=True)
                except connection.channel_errors:
                    # NOT_FOUND closes the channel: carry on with a new one.
                    channel = connection.channel()
                    continue
                result[queue] = (int(ok.message_count), int(ok.consumer_count))
        finally:
            channel.close()
        return result

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # It is being dropped anyway.
            with contextlib.suppress(Exception):
                connection.release()

    def close(self) -> None:
        """Close the RabbitMQ connection."""
        with self._lock:
            self._close()


def build_registry(*extra: Collector) -> CollectorRegistry:
    """The registry to expose: this process's metrics or, in multiprocess mode, every
    process's samples added up, plus ``extra`` collectors."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    if not extra:
        return registry
    combined = CollectorRegistry()
    combined.register(_Chain(registry))
    for collector in extra:
        combined.register(collector)
    return combined


class _Chain(Collector):
    """Exposes another registry's metrics through this one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()

    def describe(self) -> Iterable[Metric]:
        # Registering with no description would make the registry collect at once.
        return []


def metrics_endpoint(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving the Prometheus text format: this process's ``herald_*``
    metrics, Python's process metrics and the queue depths."""
    queues = QueueDepthCollector(settings.rabbitmq_url)
    registry = build_registry(queues)

    async def metrics(request: Request) -> Response:
        # The queue probe does blocking network I/O: keep it off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
