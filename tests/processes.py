"""Running ``herald`` subcommands as real processes in tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

from tests.conftest import ROOT


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
                self.process.kill()

    def restart(self) -> None:
        """Stop (if running) and start again with the same command and environment."""
        self.stop()
        self._start()
