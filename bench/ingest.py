"""Ingestion benchmark: Herald's /graphql beside the baselines, measured in the same run.

  single  sendEvent through /graphql  vs  a bare FastAPI endpoint doing the same confirmed publish
  bulk    sendEvents x 100 through /graphql  vs  raw aio-pika confirmed publishes (100 in flight)

Each pair is measured alternately for several rounds; the table gives medians and the ratio.
With ``--api-processes 1,2`` the whole measurement is repeated with Herald's API (and the bare
endpoint) served by that many uvicorn processes: RabbitMQ, Redis and PostgreSQL stay shared,
as in production, so the rows say how ingestion scales out on one machine.

Run: make bench-ingest   (needs wrk; RabbitMQ, Redis, PostgreSQL on localhost). The stores can
be pointed elsewhere with HERALD_BENCH_DATABASE_URL, HERALD_BENCH_RABBITMQ_URL and
HERALD_BENCH_REDIS_URL (a private Redis keeps the bench's rate-limit buckets off a shared one).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
import uuid

import orjson

from backend.auth import mint_token
from backend.broker import Broker, purge_work_queues
from backend.config import Settings
from backend.db.migrate import migrate
from backend.queues import DISPATCH, TASK_DISPATCH
from bench.common import free_port, median, start, stop, table, write_results, wrk

AMQP_URL = os.environ.get(
    "HERALD_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/herald_bench"
)
DB_URL = os.environ.get(
    "HERALD_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/herald_bench"
)
REDIS_URL = os.environ.get("HERALD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The per-caller event limit stays on (every request spends a token of its lease, and a lease
# is taken from Redis every few dozen requests) but high enough never to refuse the benchmark's
# single caller.
EVENT_RATE = "1000000"
SETTINGS = Settings(  # type: ignore[call-arg]
    _env_file=None,
    environment="development",
    rabbitmq_url=AMQP_URL,
    database_url=DB_URL,
    redis_url=REDIS_URL,
)
SINGLE = {
    "query": "mutation($i: EventInput!) { sendEvent(input: $i) { __typename "
    "... on EventAccepted { eventId } } }",
    "variables": {
        "i": {
            "type": "user_registered",
            "userIds": ["bench-user"],
            "channels": ["IN_APP"],
            "payload": {"source": "bench"},
        }
    },
}
BULK = {
    "query": "mutation($i: [EventInput!]!) { sendEvents(inputs: $i) { __typename "
    "... on EventBatch { accepted } } }",
    "variables": {
        "i": [
            {
                "type": "user_registered",
                "userIds": [f"bench-{n}"],
                "channels": ["IN_APP"],
                "payload": {"source": "bench"},
            }
            for n in range(100)
        ]
    },
}


async def raw_publish_rate(total: int, in_flight: int) -> float:
    broker = Broker(SETTINGS.rabbitmq_url, max_inflight=in_flight)
    await broker.start()
    envelope = {
        "id": "x",
        "type": "user_registered",
        "user_ids": ["bench"],
        "payload": {},
        "template_slug": "welcome",
        "channels": ["in_app"],
    }
    started = time.perf_counter()
    for _ in range(total // in_flight):
        await asyncio.gather(
            *(
                broker.publish_task(
                    DISPATCH, TASK_DISPATCH, kwargs={"event": envelope}, task_id=str(uuid.uuid4())
                )
                for _ in range(in_flight)
            )
        )
    elapsed = time.perf_counter() - started
    await broker.close()
    return (total // in_flight) * in_flight / elapsed


def _raw_in_process(total: int) -> float:
    return asyncio.run(raw_publish_rate(total, 100))


def raw_publish_rate_in(processes: int, total: int) -> float:
    """The raw baseline from ``processes`` publishers at once, one connection each (as many
    as the API has processes): the sum of their rates."""
    if processes == 1:
        return _raw_in_process(total)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_raw_in_process, [total // processes] * processes))


def measure(processes: int, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Herald's API and the bare endpoint, each served by ``processes`` uvicorn processes."""
    api_port, bare_port = free_port(), free_port()
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_DATABASE_URL": DB_URL,
        "HERALD_RABBITMQ_URL": AMQP_URL,
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_EVENT_RATE_PER_SECOND": EVENT_RATE,
    }
    api = start(
        [".venv/bin/herald", "api", "--port", str(api_port), "--workers", str(processes)],
        env,
        f"http://127.0.0.1:{api_port}/healthz",
    )
    bare = start(
        [
            ".venv/bin/uvicorn",
            "bench.bare_app:app",
            "--port",
            str(bare_port),
            "--workers",
            str(processes),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
        f"http://127.0.0.1:{bare_port}/docs",
    )
    token = mint_token(SETTINGS, sub="bench-service", roles=["service"])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    gql = f"http://127.0.0.1:{api_port}/graphql"
    bare_body = orjson.dumps(SINGLE["variables"]["i"])  # type: ignore[index]

    import httpx

    runs: dict[str, list[dict[str, float]]] = {"bare": [], "graphql": [], "bulk": [], "raw": []}
    try:
        # Every process answers once before measuring (its caches and connections warm).
        for _ in range(4 * processes):
            check = httpx.post(gql, json=SINGLE, headers=headers).json()
            assert check["data"]["sendEvent"]["__typename"] == "EventAccepted", check
            check = httpx.post(gql, json=BULK, headers=headers).json()
            assert check["data"]["sendEvents"]["accepted"] == 100, check
        for _ in range(args.rounds):
            runs["bare"].append(
                wrk(
                    f"http://127.0.0.1:{bare_port}/events",
                    bare_body,
                    {"Content-Type": "application/json"},
                    seconds=args.seconds,
                    connections=args.connections,
                )
            )
            runs["graphql"].append(
                wrk(
                    gql,
                    orjson.dumps(SINGLE),
                    headers,
                    seconds=args.seconds,
                    connections=args.connections,
                )
            )
            bulk = wrk(
                gql, orjson.dumps(BULK), headers, seconds=args.seconds, connections=8 * processes
            )
            runs["bulk"].append({"rps": bulk["rps"] * 100, "p50_ms": bulk["p50_ms"]})
            raw = raw_publish_rate_in(processes, 20_000)
            runs["raw"].append({"rps": raw, "p50_ms": float("nan")})
            asyncio.run(purge_work_queues(AMQP_URL))
    finally:
        stop(api)
        stop(bare)
        asyncio.run(purge_work_queues(AMQP_URL))
    return runs


def _round_ratios(runs: dict[str, list[dict[str, float]]], measured: str, base: str) -> list[float]:
    """Each round's ratio: its two rates were measured one after the other, so a machine whose
    speed drifts within the run moves both."""
    return [m["rps"] / b["rps"] for m, b in zip(runs[measured], runs[base], strict=True)]


def _rows(processes: int, runs: dict[str, list[dict[str, float]]]) -> list[tuple[str, ...]]:
    med = {k: median([r["rps"] for r in v]) for k, v in runs.items()}
    lat = {k: median([r["p50_ms"] for r in v]) for k, v in runs.items()}
    n = f"{processes}p"
    return [
        (
            f"{n} single: bare FastAPI + confirmed publish",
            f"{med['bare']:.0f} req/s",
            f"{lat['bare']:.2f}",
            "",
        ),
        (
            f"{n} single: sendEvent via /graphql",
            f"{med['graphql']:.0f} req/s",
            f"{lat['graphql']:.2f}",
            f"{med['graphql'] / med['bare']:.2f} x bare (target ≥ 0.70)",
        ),
        (f"{n} bulk: raw aio-pika confirmed publish", f"{med['raw']:.0f} msg/s", "", ""),
        (
            f"{n} bulk: sendEvents x 100 via /graphql",
            f"{med['bulk']:.0f} events/s",
            f"{lat['bulk']:.2f}",
            f"{med['bulk'] / med['raw']:.2f} x raw (target ≥ 0.80)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--api-processes",
        default="1,2",
        help="comma-separated uvicorn process counts to measure, e.g. 1 or 1,2 (default 1,2)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.api_processes.split(",") if n.strip()]
    migrate(SETTINGS)  # the built-in event types the events name come with the migrations

    results: dict[str, object] = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "connections": args.connections,
    }
    rows: list[tuple[str, ...]] = []
    for processes in counts:
        runs = measure(processes, args)
        med = {k: median([r["rps"] for r in v]) for k, v in runs.items()}
        lat = {k: median([r["p50_ms"] for r in v]) for k, v in runs.items()}
        results[f"processes_{processes}"] = {
            "runs": runs,
            "medians": med,
            "p50_ms": lat,
            "ratio_single": med["graphql"] / med["bare"],
            "ratio_bulk": med["bulk"] / med["raw"],
            "round_ratios_single": _round_ratios(runs, "graphql", "bare"),
            "round_ratios_bulk": _round_ratios(runs, "bulk", "raw"),
        }
        rows += _rows(processes, runs)
    print(table(rows, ("measure (np = uvicorn processes)", "median", "p50 ms", "ratio")))
    for processes in counts:
        measured = results[f"processes_{processes}"]
        assert isinstance(measured, dict)
        print(
            f"{processes}p ratios round by round (each pair measured back to back): single "
            + ", ".join(f"{r:.2f}" for r in measured["round_ratios_single"])
            + "; bulk "
            + ", ".join(f"{r:.2f}" for r in measured["round_ratios_bulk"])
        )
    path = write_results("ingest", results)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
