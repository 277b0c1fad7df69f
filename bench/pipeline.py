"""Pipeline capacity: the highest steady rate the whole path keeps up with, against the API's.

  ingest    single `sendEvent` requests/s the API accepts (wrk, no worker running), the
            ceiling the pipeline is compared with
  capacity  single in-app events, one user each, round-robin over --users users whose
            `notifications` subscriptions are open; at each tried rate, events are sent at that
            steady rate for --seconds and the time from `sendEvent` to the subscriber receiving
            the item is measured. A bisection finds the highest rate whose p99 stays within
            100 ms, and another the rate at which p99 crosses 60 ms
  cpu       at the highest rate that held, the CPU time each process (API, worker, PostgreSQL,
            RabbitMQ, Redis, the auth stand-in, this load generator) spent per delivered event,
            read from /proc before and after the steady period

The capacity ÷ ingest ratio is the figure to compare across machines (target ≥ 0.6): both are
measured in the same run. With ``--rates 250,400`` the bisection is skipped: each given rate is
run for --seconds and its latency and CPU per delivered event are printed, which compares two
settings or two versions at the same load far more steadily than their capacities do.
PostgreSQL, RabbitMQ and Redis are the machine's shared servers, so
their CPU includes whatever else runs on them during the measurement.

Run: make bench-pipeline   (RabbitMQ, Redis, PostgreSQL on localhost; wrk)
     python -m bench.pipeline --api-processes 2 --worker-processes 2   (scale-out)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import websockets

from backend.auth import mint_token
from backend.broker import purge_work_queues
from backend.config import Settings
from backend.db.migrate import migrate
from bench.common import (
    ROOT,
    LeanPoster,
    bench_redis_url,
    free_port,
    redis_server_pid,
    send_at_rate,
    start,
    stop,
    table,
    write_results,
    wrk,
)
from bench.deliveries import AMQP_URL, DB_URL, users_file
from bench.realtime import open_subscriber, percentile

REDIS_URL = bench_redis_url()
SEND = "mutation($i: EventInput!) { sendEvent(input: $i) { __typename } }"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def event_body(user: str, marker: str) -> bytes:
    return orjson.dumps(
        {
            "query": SEND,
            "variables": {
                "i": {
                    "type": "user_registered",
                    "userIds": [user],
                    "channels": ["IN_APP"],
                    "payload": {"marker": marker},
                }
            },
        }
    )


# --- CPU accounting from /proc -------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _processes() -> dict[int, tuple[str, int, float]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def _tree(root: int, processes: dict[int, tuple[str, int, float]]) -> set[int]:
    members, grew = {root}, True
    while grew:
        grew = False
        for pid, (_, parent, _) in processes.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    return members


# The machine's shared servers, found by their command line: every process of each.
SHARED_SERVERS: dict[str, Callable[[str], bool]] = {
    "PostgreSQL": lambda command: command.startswith("postgres"),
    "RabbitMQ": lambda command: command in ("beam.smp", "erl_child_setup"),
}


@dataclass
class CpuGroups:
    """Named sets of processes whose CPU time is read together."""

    trees: dict[str, int]  # name → root pid (the process and its descendants)
    by_name: dict[str, Callable[[str], bool]] = field(default_factory=dict)
    # name → pid, the process alone: this load generator, whose descendants are the processes
    # under test (counting its tree charged all their work to it as well).
    alone: dict[str, int] = field(default_factory=dict)

    def seconds(self) -> dict[str, float]:
        processes = _processes()
        spent: dict[str, float] = {}
        for name, root in self.trees.items():
            spent[name] = sum(processes[p][2] for p in _tree(root, processes) if p in processes)
        for name, pid in self.alone.items():
            spent[name] = processes[pid][2] if pid in processes else 0.0
        for name, matches in self.by_name.items():
            spent[name] = sum(cpu for command, _, cpu in processes.values() if matches(command))
        return spent


# --- one steady period ---------------------------------------------------------------------


@dataclass
class Step:
    rate: float
    sent: int
    latencies: list[float]
    lost: int
    cpu: dict[str, float]
    # (seconds from the period's start at which the event was sent, its latency), per event
    timeline: list[tuple[float, float]] = field(default_factory=list)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000 if self.latencies else float("inf")

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000 if self.latencies else float("inf")

    def line(self) -> str:
        """The step as printed while the run goes on."""
        return (
            f"  {self.rate:7.1f}/s  p50 {self.p50_ms:8.1f} ms  p99 {self.p99_ms:8.1f} ms"
            f"  lost {self.lost:5d}"
        )

    def seconds_p99_ms(self) -> list[float]:
        """p99 of the events sent in each whole second of the period: a tail spread over every
        second is load; one in a few seconds is a stall, whose time tells what to look for."""
        by_second: dict[int, list[float]] = {}
        for sent, latency in self.timeline:
            by_second.setdefault(int(sent), []).append(latency)
        return [
            round(percentile(by_second[s], 99) * 1000, 1) if s in by_second else float("nan")
            for s in range(max(by_second) + 1 if by_second else 0)
        ]

    def cpu_ms_per_event(self) -> dict[str, float]:
        """Each process group's CPU per delivered event, in ms."""
        delivered = max(1, len(self.latencies))
        return {k: v * 1000 / delivered for k, v in self.cpu.items()}

    def to_json(self) -> dict[str, float]:
        return {
            "rate": self.rate,
            "sent": self.sent,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "lost": self.lost,
        }


class Rig:
    """Open subscriptions and a lean HTTP client against the running API."""

    def __init__(self, api: str, settings: Settings, users: int, cpu: CpuGroups) -> None:
        self.api, self.settings, self.users, self.cpu = api, settings, users, cpu
        self.sockets: list[websockets.ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.sent_at: dict[str, float] = {}
        self.received: list[float] = []
        self.timeline: list[tuple[float, float]] = []
        self.started = 0.0

    async def open(self) -> None:
        ws_url = self.api.replace("http", "ws") + "/graphql"
        for i in range(self.users):
            token = mint_token(self.settings, sub=f"bench-{i}", roles=["user"])
            self.sockets.append(await open_subscriber(ws_url, self.api, token))
        self.readers = [asyncio.create_task(self._read(ws)) for ws in self.sockets]
        await asyncio.sleep(1)

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for ws in self.sockets:
            await ws.close()

    async def _read(self, ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            message = orjson.loads(raw)
            if message.get("type") == "next":
                marker = message["payload"]["data"]["notifications"]["data"]["marker"]
                if (sent := self.sent_at.pop(marker, None)) is not None:
                    latency = time.perf_counter() - sent
                    self.received.append(latency)
                    self.timeline.append((sent - self.started, latency))

    async def run(self, rate: float, seconds: float, *, drain: float = 20.0) -> Step:
        """Send at ``rate`` for ``seconds``; wait up to ``drain`` s for the stragglers."""
        service = mint_token(self.settings, sub="bench-service", roles=["service"])
        address = urlsplit(self.api)
        assert address.hostname is not None and address.port is not None
        self.received = []
        self.timeline = []
        self.sent_at.clear()
        gc.collect()
        gc.disable()  # this load generator's own collector pauses would count as latency
        before = self.cpu.seconds()
        self.started = time.perf_counter()
        async with LeanPoster(
            address.hostname,
            address.port,
            "/graphql",
            {"Authorization": f"Bearer {service}"},
            size=32,
        ) as http:

            async def send(n: int) -> None:
                marker = uuid.uuid4().hex
                body = event_body(f"bench-{n % self.users}", marker)
                self.sent_at[marker] = time.perf_counter()
                await http.post(body)

            n = await send_at_rate(send, rate, seconds)
        deadline = time.perf_counter() + drain
        while self.sent_at and time.perf_counter() < deadline:  # noqa: ASYNC110 (bounded poll)
            await asyncio.sleep(0.05)
        after = self.cpu.seconds()
        gc.enable()
        if set(http.statuses) != {200}:
            print(f"  warning: HTTP statuses {http.statuses}")
        lost = len(self.sent_at)
        self.sent_at.clear()
        return Step(
            rate,
            n,
            list(self.received),
            lost,
            {k: after[k] - before[k] for k in after},
            list(self.timeline),
        )


async def bisect(
    rig: Rig,
    *,
    low: float,
    high: float,
    limit_ms: float,
    steps: int,
    seconds: float,
    settle: Callable[[], Any],
    tried: list[Step],
) -> Step | None:
    """The highest rate in [low, high] whose p99 stays within ``limit_ms`` (and loses nothing):
    the last step that held, or None if even ``low`` did not."""
    held: Step | None = None
    for _ in range(steps):
        rate = (low + high) / 2
        step = await rig.run(rate, seconds)
        tried.append(step)
        ok = step.lost == 0 and step.p99_ms <= limit_ms
        print(f"{step.line()}  {'holds' if ok else 'over'} {limit_ms:.0f} ms", flush=True)
        if ok:
            low, held = rate, step
        else:
            high = rate
            await settle()
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000, help="subscribed users (round-robin)")
    parser.add_argument("--seconds", type=float, default=30, help="each steady period")
    parser.add_argument("--steps", type=int, default=5, help="bisection steps per threshold")
    parser.add_argument("--ingest-seconds", type=int, default=10)
    parser.add_argument("--api-processes", type=int, default=1, help="uvicorn processes")
    parser.add_argument("--worker-processes", type=int, default=1, help="Celery pool processes")
    parser.add_argument(
        "--rates", default="", help="fixed rates to run instead of the bisection (1,2,...)"
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    settings = Settings(_env_file=None, database_url=DB_URL, redis_url=REDIS_URL)  # type: ignore[call-arg]
    migrate(settings)
    path = users_file(args.users)
    api_port, auth_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_DATABASE_URL": DB_URL,
        "HERALD_RABBITMQ_URL": AMQP_URL,
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_ALLOWED_ORIGINS": json.dumps([api]),
        "HERALD_USER_CACHE_TTL_SECONDS": "3600",
        "HERALD_WS_CONNECT_RATE_PER_SECOND": "0",
        # One service token sends all the load: its quota is not what is measured.
        "HERALD_EVENT_RATE_PER_SECOND": "0",
    }
    herald = [sys.executable, "-m", "backend.cli"]
    asyncio.run(purge_work_queues(AMQP_URL))
    auth = start(
        [*herald, "auth-standin", "--port", str(auth_port), "--users", path],
        env,
        f"http://127.0.0.1:{auth_port}/healthz",
    )
    server = start(
        [*herald, "api", "--port", str(api_port), "--workers", str(args.api_processes)],
        env,
        f"{api}/healthz",
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        # The API's own ceiling, with nothing consuming: what it accepts per second.
        service = mint_token(settings, sub="bench-service", roles=["service"])
        accepted = wrk(
            f"{api}/graphql",
            event_body("bench-0", "ingest"),
            {"Authorization": f"Bearer {service}", "Content-Type": "application/json"},
            seconds=args.ingest_seconds,
            connections=32,
        )["rps"]
        print(f"single sendEvent accepted: {accepted:.0f}/s", flush=True)
        asyncio.run(purge_work_queues(AMQP_URL))
        worker = subprocess.Popen(
            [*herald, "worker", "--concurrency", str(args.worker_processes)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(8)
        redis_pid = redis_server_pid(REDIS_URL)
        cpu = CpuGroups(
            trees={
                "API": server.pid,
                "worker": worker.pid,
                "Redis": redis_pid,
                "auth stand-in": auth.pid,
            },
            alone={"load generator": os.getpid()},
            by_name=SHARED_SERVERS,
        )

        async def measure() -> dict[str, Any]:
            rig = Rig(api, settings, args.users, cpu)
            await rig.open()

            async def settle() -> None:
                # An overloaded step leaves a backlog that would be charged to the next one.
                await purge_work_queues(AMQP_URL)
                await asyncio.sleep(3)

            # Warm-up, not recorded: every user's first event (profile from the auth service).
            await rig.run(min(100.0, accepted / 4), args.users / min(100.0, accepted / 4))
            await settle()
            tried: list[Step] = []
            if rates:
                for rate in rates:
                    tried.append(step := await rig.run(rate, args.seconds))
                    print(step.line(), flush=True)
                    await settle()
                await rig.close()
                return {"tried": tried}
            print("p99 ≤ 100 ms:", flush=True)
            at_100 = await bisect(
                rig,
                low=0.0,
                high=accepted,
                limit_ms=100,
                steps=args.steps,
                seconds=args.seconds,
                settle=settle,
                tried=tried,
            )
            print("p99 ≤ 60 ms:", flush=True)
            at_60 = await bisect(
                rig,
                low=0.0,
                high=at_100.rate if at_100 else accepted,
                limit_ms=60,
                steps=max(1, args.steps - 1),
                seconds=args.seconds,
                settle=settle,
                tried=tried,
            )
            await rig.close()
            return {"at_100": at_100, "at_60": at_60, "tried": tried}

        found = asyncio.run(measure())
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        stop(server)
        stop(auth)
        os.unlink(path)

    if rates:
        _fixed_rates(args, accepted, found["tried"])
        return
    at_100: Step | None = found["at_100"]
    at_60: Step | None = found["at_60"]
    capacity = at_100.rate if at_100 else 0.0
    ratio = capacity / accepted
    rows: list[tuple[str, ...]] = [
        ("single sendEvent accepted (API alone)", f"{accepted:.0f}/s", "", ""),
        (
            f"capacity: p99 ≤ 100 ms for {args.seconds:.0f} s",
            f"{capacity:.0f}/s",
            f"p50 {at_100.p50_ms:.1f} / p99 {at_100.p99_ms:.1f} ms" if at_100 else "none held",
            "",
        ),
        ("capacity ÷ accepted", f"{ratio:.2f}", "", "target ≥ 0.6"),
        (
            "rate where p99 crosses 60 ms",
            f"{at_60.rate:.0f}/s" if at_60 else "below the lowest tried",
            f"p99 {at_60.p99_ms:.1f} ms" if at_60 else "",
            "",
        ),
    ]
    cpu_ms: dict[str, float] = {}
    if at_100 is not None:
        cpu_ms = at_100.cpu_ms_per_event()
        total = sum(cpu_ms.values())
        rows.append(("CPU per delivered event, all processes", f"{total:.2f} ms", "", ""))
        rows += [
            (f"  {name}", f"{ms:.2f} ms", f"{ms / total:.0%}", "")
            for name, ms in sorted(cpu_ms.items(), key=lambda kv: -kv[1])
        ]
    print()
    print(
        f"{args.api_processes} API process(es), {args.worker_processes} worker process(es), "
        f"{args.users} subscribed users"
    )
    print(table(rows, ("measure", "value", "", "target")))
    out = write_results(
        f"pipeline-api{args.api_processes}-worker{args.worker_processes}",
        {
            "args": vars(args),
            "accepted_per_s": accepted,
            "capacity_per_s": capacity,
            "capacity_over_accepted": ratio,
            "p99_60ms_rate_per_s": at_60.rate if at_60 else None,
            "cpu_ms_per_event": cpu_ms,
            "steps": [s.to_json() for s in found["tried"]],
        },
    )
    print(f"\nwritten to {out}")


def _fixed_rates(args: argparse.Namespace, accepted: float, steps: list[Step]) -> None:
    """The table and JSON of a ``--rates`` run: latency and CPU per delivered event at each."""
    names = sorted(
        {n for s in steps for n in s.cpu},
        key=lambda n: -max(s.cpu_ms_per_event()[n] for s in steps),
    )
    rows = []
    for step in steps:
        per = step.cpu_ms_per_event()
        rows.append(
            (
                f"{step.rate:.0f}/s",
                f"{step.p50_ms:.1f}",
                f"{step.p99_ms:.1f}",
                str(step.lost),
                f"{sum(per.values()):.2f}",
                *(f"{per[n]:.2f}" for n in names),
            )
        )
    print()
    print(
        f"{args.api_processes} API process(es), {args.worker_processes} worker process(es), "
        f"{args.users} subscribed users; single sendEvent accepted (API alone) {accepted:.0f}/s"
    )
    print(table(rows, ("rate", "p50 ms", "p99 ms", "lost", "CPU ms/event", *names)))
    print("\np99 ms of the events sent in each second:")
    for step in steps:
        seconds = step.seconds_p99_ms()
        over = sum(1 for v in seconds if v > 100)
        print(f"  {step.rate:.0f}/s ({over} of {len(seconds)} over 100 ms): {seconds}")
    out = write_results(
        f"pipeline-rates-api{args.api_processes}-worker{args.worker_processes}",
        {
            "args": vars(args),
            "accepted_per_s": accepted,
            "steps": [
                {
                    **s.to_json(),
                    "cpu_ms_per_event": s.cpu_ms_per_event(),
                    "seconds_p99_ms": s.seconds_p99_ms(),
                }
                for s in steps
            ],
        },
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
