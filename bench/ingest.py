"""Ingestion benchmark: Herald's /graphql beside the baselines, measured in the same run.

  single  sendEvent through /graphql  vs  a bare FastAPI endpoint doing the same confirmed publish
  bulk    sendEvents × 100 through /graphql  vs  raw aio-pika confirmed publishes (100 in flight)

Each pair is measured alternately for several rounds; the table gives medians and the ratio.
Run: make bench-ingest   (needs wrk; RabbitMQ, Redis, PostgreSQL on localhost)
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import orjson

from backend.auth import mint_token
from backend.broker import Broker, purge_work_queues
from backend.config import Settings
from backend.db.migrate import migrate
from backend.queues import DISPATCH, TASK_DISPATCH
from bench.common import free_port, median, start, stop, table, write_results, wrk

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/herald_bench"
DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/herald_bench"
SETTINGS = Settings(  # type: ignore[call-arg]
    _env_file=None, environment="development", rabbitmq_url=AMQP_URL, database_url=DB_URL
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    migrate(SETTINGS)  # the built-in event types the events name come with the migrations

    api_port, bare_port = free_port(), free_port()
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_DATABASE_URL": DB_URL,
        "HERALD_RABBITMQ_URL": AMQP_URL,
    }
    api = start(
        [".venv/bin/herald", "api", "--port", str(api_port)],
        env,
        f"http://127.0.0.1:{api_port}/healthz",
    )
    bare = start(
        [
            ".venv/bin/uvicorn",
            "bench.bare_app:app",
            "--port",
            str(bare_port),
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

    check = httpx.post(gql, json=SINGLE, headers=headers).json()
    assert check["data"]["sendEvent"]["__typename"] == "EventAccepted", check
    check = httpx.post(gql, json=BULK, headers=headers).json()
    assert check["data"]["sendEvents"]["accepted"] == 100, check

    runs: dict[str, list[dict[str, float]]] = {"bare": [], "graphql": [], "bulk": [], "raw": []}
    try:
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
            bulk = wrk(gql, orjson.dumps(BULK), headers, seconds=args.seconds, connections=8)
            runs["bulk"].append({"rps": bulk["rps"] * 100, "p50_ms": bulk["p50_ms"]})
            raw = asyncio.run(raw_publish_rate(20_000, 100))
            runs["raw"].append({"rps": raw, "p50_ms": float("nan")})
            asyncio.run(purge_work_queues(AMQP_URL))
    finally:
        stop(api)
        stop(bare)
        asyncio.run(purge_work_queues(AMQP_URL))

    med = {k: median([r["rps"] for r in v]) for k, v in runs.items()}
    lat = {k: median([r["p50_ms"] for r in v]) for k, v in runs.items()}
    rows = [
        (
            "single: bare FastAPI + confirmed publish",
            f"{med['bare']:.0f} req/s",
            f"{lat['bare']:.2f}",
            "",
        ),
        (
            "single: sendEvent via /graphql",
            f"{med['graphql']:.0f} req/s",
            f"{lat['graphql']:.2f}",
            f"{med['graphql'] / med['bare']:.2f} × bare (target ≥ 0.70)",
        ),
        ("bulk: raw aio-pika confirmed publish", f"{med['raw']:.0f} msg/s", "", ""),
        (
            "bulk: sendEvents × 100 via /graphql",
            f"{med['bulk']:.0f} events/s",
            f"{lat['bulk']:.2f}",
            f"{med['bulk'] / med['raw']:.2f} × raw (target ≥ 0.80)",
        ),
    ]
    print(table(rows, ("measure", "median", "p50 ms", "ratio")))
    path = write_results(
        "ingest",
        {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "runs": runs,
            "medians": med,
            "p50_ms": lat,
            "ratio_single": med["graphql"] / med["bare"],
            "ratio_bulk": med["bulk"] / med["raw"],
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
