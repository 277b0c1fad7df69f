"""Helpers for the benchmark scripts: processes, wrk runs, tables and JSON results."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def bench_database_url(database: str = "herald_bench") -> str:
    """The benchmarks' PostgreSQL database: HERALD_BENCH_DATABASE_URL, else ``database`` on
    the local server."""
    return os.environ.get(
        "HERALD_BENCH_DATABASE_URL", f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    )


def bench_rabbitmq_url() -> str:
    """The benchmarks' RabbitMQ virtual host: HERALD_BENCH_RABBITMQ_URL, else herald_bench."""
    return os.environ.get(
        "HERALD_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/herald_bench"
    )


def bench_redis_url(db: int = 0) -> str:
    """The benchmarks' Redis: HERALD_BENCH_REDIS_URL, else database ``db`` on the local one."""
    return os.environ.get("HERALD_BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{db}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], health_url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(health_url, timeout=1).status_code < 500:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{args} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def wrk(
    url: str, body: bytes, headers: dict[str, str], *, seconds: int, connections: int
) -> dict[str, float]:
    """Requests/s from wrk POSTing ``body``; fails if any response was not 2xx."""
    lua = "wrk.method = 'POST'\nwrk.body = " + json.dumps(body.decode()) + "\n"
    for key, value in headers.items():
        lua += f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
        script = f.name
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan")
    return {"rps": rps, "p50_ms": latency}


async def send_at_rate(
    send: Callable[[int], Awaitable[object]], rate: float, seconds: float
) -> int:
    """Start ``send(n)`` for n = 0, 1, ... at a steady ``rate`` per second for ``seconds``
    (open loop: a slow answer does not delay the next send); wait for them all; how many."""
    tasks = []
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        tasks.append(asyncio.create_task(send(n)))
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    return n


def redis_server_pid(url: str) -> int:
    """The pid of the Redis server at ``url`` (its CPU is read from /proc)."""
    info = subprocess.run(
        ["redis-cli", "-p", str(urlsplit(url).port or 6379), "info", "server"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(info.split("process_id:")[1].split()[0])


async def cpu_us_per_call(times: int, call: Callable[[int], Awaitable[object]]) -> float:
    """This process's CPU µs per call over ``times`` calls made one after another (each given
    its number): what one call costs the caller, whatever its peer spends."""
    begin = time.process_time()
    for n in range(times):
        await call(n)
    return (time.process_time() - begin) / times * 1e6


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *map(line, rows)])


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"python": sys.version.split()[0], "cores": os.cpu_count(), **data}
    path.write_text(json.dumps(data, indent=2))
    return path


class LeanPoster:
    """POSTs JSON over a few keep-alive HTTP/1.1 connections with almost no client-side work.

    The load generator shares the machine's two cores with everything it measures: httpx spent
    most of a core at 150 requests/s, time the system under test then lacked. This one writes
    pre-encoded headers and reads the response by its Content-Length."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str], size: int = 16):
        self.host, self.port, self.size = host, port, size
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = head.encode()
        self.idle: Any = None
        self.statuses: dict[int, int] = {}

    async def __aenter__(self) -> LeanPoster:
        import asyncio

        self.idle = asyncio.Queue()
        for _ in range(self.size):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))
        return self

    async def __aexit__(self, *_: object) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()

    async def post(self, body: bytes) -> int:
        reader, writer = await self.idle.get()
        try:
            writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        finally:
            self.idle.put_nowait((reader, writer))
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status
