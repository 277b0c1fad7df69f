"""Development logs stay readable: with real ``herald beat`` and ``herald worker`` processes,
beat's every-second housekeeping (``events.release_due``) is logged at DEBUG, in beat
("Sending due task") and in the worker ("received", "succeeded"). That other tasks keep their
INFO lines is checked in test_logs.py."""

from __future__ import annotations

import re
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import herald_process_env
from tests.processes import Process

# Log lines about the housekeeping task (the worker's start-up banner lists it too).
HOUSEKEEPING_LINE = re.compile(r"Sending due task release-due-events|Task events\.release_due\[")


def run_beat_and_worker(level: str, seconds: float) -> list[str]:
    """``herald worker`` and ``herald beat`` for ``seconds`` at log ``level``; their lines."""
    env = herald_process_env(HERALD_WORKER_METRICS_PORT="0", HERALD_LOG_LEVEL=level)
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
