"""Observability for Celery processes: the worker's ``/metrics`` server, logging, tracing.

A worker's prefork pool forks child processes that run the tasks, each with its own memory,
so an in-memory counter in one child is invisible to a metrics server in the parent.
prometheus_client's multiprocess mode solves this: every process writes its samples to
memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and the server adds them up at scrape time.
:func:`prepare_multiprocess_dir` creates that directory (empty: samples from a previous run
would be added to this one's) before anything creates a metric, and removes it at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextvars import Token
from pathlib import Path
from typing import Any

from backend.config import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(directory: str | Path | None = None) -> Path:
    """Switch this process and its future children to multiprocess metrics.

    Uses ``directory``, else ``$PROMETHEUS_MULTIPROC_DIR``, else a new temporary directory;
    an existing one is emptied. A directory this function created is removed when the
    process that created it exits (not when a forked child does). Raises RuntimeError when
    the metrics module was imported first, because its metrics would then count in memory
    and silently miss every child's samples.
    """
    if "backend.observability.metrics" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError(
            "backend.observability.metrics was imported before the multiprocess directory "
            "was set up; call prepare_multiprocess_dir() first"
        )
    chosen = directory or os.environ.get(MULTIPROC_ENV)
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="herald-metrics-"))
        owner = os.getpid()

        def remove() -> None:
            if os.getpid() == owner:
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(remove)
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client chose its value storage when it was imported; choose again now.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return path


def serve_worker_metrics(settings: Settings, *, host: str = "0.0.0.0") -> int | None:
    """Serve the summed metrics of this process and its children, plus the queue depths, at
    ``http://host:settings.worker_metrics_port/metrics``. Returns the port, or None when
    the port setting is 0 (off)."""
    if not settings.worker_metrics_port:
        return None
    if not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError("call prepare_multiprocess_dir() before serve_worker_metrics()")
    from prometheus_client import start_http_server

    from backend.observability.metrics import QueueDepthCollector, build_registry

    registry = build_registry(QueueDepthCollector(settings.rabbitmq_url))
    try:
        server, _ = start_http_server(settings.worker_metrics_port, addr=host, registry=registry)
    except OSError as exc:
        # A second worker on one host (development, tests) must still run, if unscraped.
        log.error("worker metrics not served on port %s: %s", settings.worker_metrics_port, exc)
        return None
    port = int(server.server_port)
    log.info("worker metrics on http://%s:%s/metrics", host, port)
    return port


def _mark_process_dead(pid: int | None = None, **_: Any) -> None:
    from prometheus_client import multiprocess

    # Drops a finished pool process's live gauges; its counters stay in the sum.
    multiprocess.mark_process_dead(pid or os.getpid())


_task_context: dict[str, Token[Any]] = {}


def _bind_task_context(task_id: str | None = None, task: Any = None, **kw: Any) -> None:
    from backend.observability.logs import bind_log_context

    kwargs = kw.get("kwargs") or {}
    event = kwargs.get("event") if isinstance(kwargs, dict) else None
    event_id = event.get("id") if isinstance(event, dict) else None
    if task_id is not None:
        _task_context[task_id] = bind_log_context(
            task=getattr(task, "name", None), task_id=task_id, event_id=event_id
        )


def _unbind_task_context(task_id: str | None = None, **_: Any) -> None:
    from backend.observability.logs import reset_log_context

    token = _task_context.pop(task_id or "", None)
    if token is not None:
        # ValueError: bound in another context (a retried task's new run).
        with contextlib.suppress(ValueError):
            reset_log_context(token)


def connect_celery_logging(settings: Settings) -> Callable[[], None]:
    """Keep Celery from replacing our logging set-up, and give every task's log lines its
    ``task``, ``task_id`` and, for Herald's tasks (an ``event`` keyword argument), the
    ``event_id``. Returns a function that disconnects these signal handlers."""
    from celery import signals

    from backend.observability.logs import configure_logging

    def keep_our_logging(**_: Any) -> None:
        # Answering this signal stops Celery from configuring logging itself.
        configure_logging(settings)

    connections = [
        (signals.setup_logging, keep_our_logging),
        (signals.task_prerun, _bind_task_context),
        (signals.task_postrun, _unbind_task_context),
    ]
    for signal, receiver in connections:
        signal.connect(receiver, weak=False)

    def disconnect() -> None:
        for signal, receiver in connections:
            signal.disconnect(receiver)

    return disconnect


def setup_worker(settings: Settings, *, service_name: str = "herald-worker") -> int | None:
    """Everything a ``herald worker`` needs before Celery starts: multiprocess metrics and
    their server, logging, tracing, task log context. Returns the metrics port or None."""
    from backend.observability.logs import configure_logging
    from backend.observability.tracing import configure_tracing

    configure_logging(settings)
    directory = prepare_multiprocess_dir()
    log.info("pool processes write their metrics to %s", directory)
    connect_celery_logging(settings)
    from celery import signals

    signals.worker_process_shutdown.connect(_mark_process_dead, weak=False)
    configure_tracing(settings, service_name)
    return serve_worker_metrics(settings)


def setup_beat(settings: Settings, *, service_name: str = "herald-beat") -> None:
    """Logging and tracing for ``herald beat`` (its publishes join the tasks' traces)."""
    from backend.observability.logs import configure_logging
    from backend.observability.tracing import configure_tracing

    configure_logging(settings)
    connect_celery_logging(settings)
    configure_tracing(settings, service_name)
