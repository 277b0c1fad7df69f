"""GraphQL execution per operation: compiled plans against graphql-core's executor, in process.

``POST /graphql`` with a ``sendEvent`` (the ingest benchmark's document) is sent straight to
Herald's ASGI app, with its real broker, Redis and PostgreSQL, in blocks of requests that
alternate between the schema's compiled plans (backend/schema/plans.py) and graphql-core's
executor (``HeraldSchema.plans`` set to None), the two on one app in one process. Each block
is timed by the process's CPU clock: on two shared cores whose speed drifts within a minute,
CPU per request, alternated block by block, compares the two roads more steadily than a
request rate from wrk does (bench/ingest.py measures that, against a bare endpoint).

Run: python -m bench.operations [--blocks 20 --requests 200 --concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from backend.app import create_app
from backend.auth import mint_token
from backend.broker import purge_work_queues
from backend.db.migrate import migrate
from bench.common import median, table, write_results
from bench.ingest import EVENT_RATE, SETTINGS, SINGLE


async def _post(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = SETTINGS.model_copy(update={"event_rate_per_second": float(EVENT_RATE)})
    app = create_app(settings)
    schema = app.state.schema
    plans = schema.plans
    assert plans is not None, "HERALD_GRAPHQL_PLANS is off"
    token = mint_token(SETTINGS, sub="bench-service", roles=["service"])
    body = orjson.dumps(SINGLE)
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    per_request: dict[str, list[float]] = {"plans": [], "executor": []}
    async with app.router.lifespan_context(app):
        for road in ("plans", "executor"):  # each road answers once before measuring
            schema.plans = plans if road == "plans" else None
            answer = orjson.loads(await _post(app, body, headers))
            assert answer["data"]["sendEvent"]["__typename"] == "EventAccepted", answer
        for block in range(args.blocks):
            order = ("plans", "executor") if block % 2 == 0 else ("executor", "plans")
            for road in order:
                schema.plans = plans if road == "plans" else None
                started = time.process_time()
                for _ in range(args.requests // args.concurrency):
                    await asyncio.gather(
                        *(_post(app, body, headers) for _ in range(args.concurrency))
                    )
                spent = time.process_time() - started
                count = args.requests // args.concurrency * args.concurrency
                per_request[road].append(spent / count * 1e6)
            await purge_work_queues(SETTINGS.rabbitmq_url)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    migrate(SETTINGS)
    per_request = asyncio.run(run(args))
    plans, executor = median(per_request["plans"]), median(per_request["executor"])
    ratios = sorted(
        p / e for p, e in zip(per_request["plans"], per_request["executor"], strict=True)
    )
    rows: list[tuple[str, ...]] = [
        ("sendEvent, graphql-core's executor", f"{executor:.0f}", ""),
        ("sendEvent, compiled plan", f"{plans:.0f}", f"{median(ratios):.2f} x executor"),
    ]
    print(table(rows, ("road (in process, CPU per request)", "median µs", "ratio")))
    print(f"block ratios, plan ÷ executor: min {ratios[0]:.2f}, max {ratios[-1]:.2f}")
    path = write_results(
        "operations",
        {
            "blocks": args.blocks,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "cpu_us_per_request": per_request,
            "median_ratio_plan_to_executor": median(ratios),
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
