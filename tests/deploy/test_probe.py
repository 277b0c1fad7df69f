"""The container healthchecks, run the way compose runs them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from backend.observability.probe import check_redis_key, check_url
from tests.conftest import free_port
from tests.deploy.conftest import http_server, run_python
from tests.http_stubs import QuietHandler

REDIS_URL = "redis://127.0.0.1:6379/0"


def probe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "backend.observability.probe", *args, **env, timeout=30)


@pytest.fixture
def web() -> Iterator[str]:
    """/ok answers 200, /sick 503."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with http_server(Handler) as url:
        yield url


def test_url_probe(web):
    # As compose runs it, once; the other cases call the same function in-process.
    assert probe("url", f"{web}/ok").returncode == 0
    assert "503" in (check_url(f"{web}/sick") or "")
    assert "did not answer" in (check_url(f"http://127.0.0.1:{free_port()}/healthz") or "")
    assert "not an http(s) URL" in (check_url("file:///etc/passwd") or "")


def test_redis_key_probe():
    key = f"herald:test:probe:{uuid.uuid4().hex}"
    assert check_redis_key(REDIS_URL, key) == f"{key} is not set"
    client = Redis.from_url(REDIS_URL)
    try:
        client.set(key, "held", ex=30)
        assert probe("redis-key", key, HERALD_REDIS_URL=REDIS_URL).returncode == 0
    finally:
        client.delete(key)
        client.close()
    unreachable = check_redis_key(f"redis://127.0.0.1:{free_port()}/0", key, timeout=1)
    assert unreachable is not None and unreachable.startswith("Redis did not answer")


def test_worker_probe_off_when_metrics_are_off():
    off = probe("worker", HERALD_WORKER_METRICS_PORT="0")
    assert off.returncode == 1 and "is 0" in off.stderr
