"""Real processes in tests: `herald` subcommands, and ASGI apps under uvicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from tests.conftest import ROOT, free_port, herald_process_env, start_herald


class Process:
    """A ``herald`` subcommand whose output is watched for a readiness line."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        ready: str,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.args, self.env, self.ready = args, env, ready
        self.stop_signal = stop_signal
        self._start()

    def _start(self) -> None:
        args, env, ready = self.args, self.env, self.ready
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A group of its own, so that a process that will not stop goes with its children.
            start_new_session=True,
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not self._ready.wait(60):
            self.stop()
            raise RuntimeError("process did not become ready:\n" + "".join(self.lines[-40:]))

    def _read(self, ready: str) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if ready in line:
                self._ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                # Killed alone, a worker would leave its pool and dispatch consumers running,
                # taking the next test's messages with this one's settings.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def restart(self) -> None:
        """Stop (if running) and start again with the same command and environment."""
        self.stop()
        self._start()


class ThreadedServer:
    """An ASGI app under a real uvicorn server in a background thread, on a free port;
    ``config`` goes to ``uvicorn.Config``."""

    def __init__(self, app: Any, **config: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        options = {"log_level": "warning", "access_log": False, "lifespan": "off", **config}
        self._server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # force_exit: requests still sleeping in the slow server must not hold up the teardown.
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(10)
        self._socket.close()


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 10) -> None:
    """Until something listens on ``port``; raises when ``process`` exits first (with its
    stderr) or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"process exited with {process.returncode}: {stderr[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds} s")


def wait_http(url: str, seconds: float = 30) -> None:
    """Poll ``url`` until it answers 200; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@contextmanager
def auth_standin(*args: str, wait: bool = True) -> Iterator[str]:
    """``herald auth-standin`` with ``args`` on a free port, signing with the suite's secret;
    its URL, once it answers unless ``wait`` is False (the caller then waits for
    ``/healthz`` itself). Stopped on the way out."""
    port = free_port()
    process = start_herald("auth-standin", "--port", str(port), *args, env=herald_process_env())
    url = f"http://127.0.0.1:{port}"
    try:
        if wait:
            wait_http(f"{url}/healthz")
        yield url
    finally:
        process.terminate()
        process.wait(10)
