"""Development logs stay readable: beat's every-second housekeeping (``events.release_due``)
is logged at DEBUG, in beat ("Sending due task") and in the worker ("received",
"succeeded"), while other tasks' lines stay at INFO."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator

import pytest
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.observability.logs import configure_logging
from backend.queues import TASK_DISPATCH, TASK_RELEASE_DUE
from backend.workers.celery_app import HOUSEKEEPING_TASKS, create_celery
from tests.conftest import (
    TEST_DATABASE_URL,
    TEST_RABBITMQ_URL,
    TEST_REDIS_URL,
    make_settings,
)
from tests.processes import Process

# Log lines about the housekeeping task (the worker's start-up banner lists it too).
HOUSEKEEPING_LINE = re.compile(r"Sending due task release-due-events|Task events\.release_due\[")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_tasks(level: str) -> str:
    """Run a housekeeping task and a dispatch task through Celery's tracer; the log text."""
    stream = io.StringIO()
    configure_logging(make_settings(log_level=level), stream=stream)
    create_celery(make_settings())  # installs the housekeeping filter, as worker and beat do
    app = Celery("herald-quiet-log-test", set_as_current=False)

    def nothing() -> int:
        return 0

    app.task(name=TASK_RELEASE_DUE)(nothing).apply()
    app.task(name=TASK_DISPATCH)(nothing).apply()
    return stream.getvalue()


def test_housekeeping_lines_are_debug_and_others_info(restore_logging):
    assert TASK_RELEASE_DUE in HOUSEKEEPING_TASKS
    at_info = run_tasks("INFO")
    assert f"INFO celery.app.trace Task {TASK_DISPATCH}[" in at_info
    assert TASK_RELEASE_DUE not in at_info
    at_debug = run_tasks("DEBUG")
    assert f"DEBUG celery.app.trace Task {TASK_RELEASE_DUE}[" in at_debug
    assert f"INFO celery.app.trace Task {TASK_DISPATCH}[" in at_debug


def run_beat_and_worker(level: str, seconds: float) -> list[str]:
    """``herald worker`` and ``herald beat`` for ``seconds`` at log ``level``; their lines."""
    env = {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_DATABASE_URL": TEST_DATABASE_URL,
        "HERALD_RABBITMQ_URL": TEST_RABBITMQ_URL,
        "HERALD_REDIS_URL": TEST_REDIS_URL,
        "HERALD_JWT_SECRET": "test-secret-for-the-suite-0123456789abcdef",
        "HERALD_WORKER_METRICS_PORT": "0",
        "HERALD_LOG_LEVEL": level,
    }
    worker = Process(["worker", "--concurrency", "1"], env, ready="ready.")
    try:
        beat = Process(["beat"], env, ready="beat: Starting")
        try:
            time.sleep(seconds)
        finally:
            beat.stop()
    finally:
        worker.stop()
    return beat.lines + worker.lines


def test_beat_and_worker_keep_housekeeping_out_of_the_info_log(engine: AsyncEngine):
    lines = run_beat_and_worker("INFO", 4)
    assert not [line for line in lines if HOUSEKEEPING_LINE.search(line)]

    # The same processes at DEBUG: the lines exist, sent, received and succeeded each second,
    # and are labelled DEBUG.
    lines = [line for line in run_beat_and_worker("DEBUG", 4) if HOUSEKEEPING_LINE.search(line)]
    sent = [line for line in lines if "Sending due task release-due-events" in line]
    received = [
        line for line in lines if re.search(r"Task events\.release_due\[\S+\] received", line)
    ]
    succeeded = [
        line for line in lines if re.search(r"Task events\.release_due\[\S+\] succeeded", line)
    ]
    assert len(sent) >= 2 and received and succeeded, "".join(lines[-20:])
    for line in sent + received + succeeded:
        assert " DEBUG celery." in line, line
