"""Delivery throughput through real Celery workers: in-app (inbox + history + Redis) and email
into a local SMTP sink, beside a bare aiosmtplib client sending the same number of messages into
the same sink, measured in the same run.

Run: make bench-deliveries   (RabbitMQ, Redis, PostgreSQL on localhost)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib
from sqlalchemy.ext.asyncio import create_async_engine

from backend.broker import Broker, purge_work_queues
from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryFilter, DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.migrate import migrate
from backend.queues import DISPATCH, TASK_DISPATCH
from bench.common import (
    ROOT,
    bench_database_url,
    bench_rabbitmq_url,
    free_port,
    median,
    start,
    stop,
    table,
    write_results,
)

DATABASE = "herald_bench"
# HERALD_BENCH_DATABASE_URL, HERALD_BENCH_RABBITMQ_URL and HERALD_BENCH_REDIS_URL point the
# benchmarks at private stores (bench.common); the defaults are the machine's shared ones.
DB_URL = bench_database_url(DATABASE)
AMQP_URL = bench_rabbitmq_url()


def users_file(count: int) -> str:
    users = [
        {
            "id": f"bench-{i}",
            "email": f"user{i}@bench.example",
            "first_name": f"User{i}",
            "last_name": "Bench",
            "login": f"user{i}",
            "locale": "en",
            "roles": ["user"],
        }
        for i in range(count)
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(users, f)
        return f.name


async def publish_events(run_id: str, users: int, per_event: int, channel: str) -> None:
    broker = Broker(AMQP_URL)
    await broker.start()
    publishes = []
    for start_at in range(0, users, per_event):
        event_id = str(uuid.uuid4())
        envelope = {
            "id": event_id,
            "type": "user_registered",
            "user_ids": [f"bench-{i}" for i in range(start_at, min(users, start_at + per_event))],
            "payload": {},
            "template_slug": "welcome",
            "channels": [channel],
            "locale": None,
            "critical": False,
            "created_at": datetime.now(UTC).isoformat(),
            "send_at": None,
            "actor": "bench",
            "campaign_id": run_id,
        }
        publishes.append(
            broker.publish_task(
                DISPATCH, TASK_DISPATCH, kwargs={"event": envelope}, task_id=event_id
            )
        )
    await asyncio.gather(*publishes)
    await broker.close()


async def wait_done(run_id: str, total: int, limit: float) -> tuple[float, dict[str, int]]:
    engine = create_async_engine(DB_URL)
    store = PostgresHistoryStore(engine)
    started = time.perf_counter()
    counts: dict[str, int] = {}
    try:
        while time.perf_counter() - started < limit:
            raw = await store.count_by_status(DeliveryFilter(campaign_id=run_id))
            counts = {status.value: n for (_, status), n in raw.items()}
            final = sum(n for s, n in counts.items() if s in ("sent", "skipped", "failed", "dead"))
            if final >= total:
                break
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    return time.perf_counter(), counts


async def bare_smtp_rate(port: int, total: int, connections: int) -> float:
    async def sender(indices: range) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for i in indices:
            message = EmailMessage()
            message["From"] = "Herald <noreply@herald.localhost>"
            message["To"] = f"user{i}@bench.example"
            message["Subject"] = f"Welcome to Herald, User{i}!"
            message.set_content(f"Hello User{i},\n\nthanks for joining us.")
            message.add_alternative(
                f"<p>Hello User{i},</p><p>thanks for joining us.</p>", subtype="html"
            )
            await client.send_message(message)
        await client.quit()

    per = total // connections
    started = time.perf_counter()
    await asyncio.gather(*(sender(range(c * per, (c + 1) * per)) for c in range(connections)))
    return per * connections / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--in-app-users", type=int, default=10_000)
    parser.add_argument("--email-users", type=int, default=2_000)
    parser.add_argument("--per-event", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    settings = Settings(_env_file=None, database_url=DB_URL)  # type: ignore[call-arg]
    migrate(settings)
    users = max(args.in_app_users, args.email_users)
    path = users_file(users)
    auth_port, smtp_port, sink_http = free_port(), free_port(), free_port()
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_DATABASE_URL": DB_URL,
        "HERALD_RABBITMQ_URL": AMQP_URL,
        "HERALD_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "HERALD_SMTP_PORT": str(smtp_port),
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_USER_CACHE_TTL_SECONDS": "3600",
    }
    asyncio.run(purge_work_queues(AMQP_URL))
    herald = [sys.executable, "-m", "backend.cli"]
    auth = start(
        [*herald, "auth-standin", "--port", str(auth_port), "--users", path],
        env,
        f"http://127.0.0.1:{auth_port}/healthz",
    )
    sink = start(
        [*herald, "smtp-sink", "--smtp-port", str(smtp_port), "--http-port", str(sink_http)],
        env,
        f"http://127.0.0.1:{sink_http}/api/messages",
    )
    worker = subprocess.Popen(
        [*herald, "worker", "--concurrency", str(args.concurrency)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(8)  # the worker's processes start their clients
    runs: dict[str, list[float]] = {"in_app": [], "email": [], "bare_smtp": []}
    try:
        for round_number in range(args.rounds):
            for channel, count, key in (
                ("in_app", args.in_app_users, "in_app"),
                ("email", args.email_users, "email"),
            ):
                run_id = f"bench-{key}-{round_number}-{uuid.uuid4().hex[:6]}"
                started = time.perf_counter()
                asyncio.run(publish_events(run_id, count, args.per_event, channel))
                ended, counts = asyncio.run(wait_done(run_id, count, limit=600))
                if counts.get("sent", 0) != count:
                    raise RuntimeError(f"{key}: expected {count} sent, got {counts}")
                runs[key].append(count / (ended - started))
                print(f"round {round_number} {key}: {count} in {ended - started:.1f} s")
            runs["bare_smtp"].append(asyncio.run(bare_smtp_rate(smtp_port, args.email_users, 8)))
    finally:
        worker.terminate()
        worker.wait(30)
        stop(sink)
        stop(auth)
        os.unlink(path)

    med = {k: median(v) for k, v in runs.items()}
    rows = [
        ("in-app deliveries (inbox + history + live publish)", f"{med['in_app']:.0f}/s", ""),
        (
            "email through the worker into the SMTP sink",
            f"{med['email']:.0f}/s",
            f"{med['email'] / med['bare_smtp']:.2f} x bare",
        ),
        ("bare aiosmtplib client, 8 connections, same sink", f"{med['bare_smtp']:.0f}/s", ""),
    ]
    print(table(rows, ("measure", "median", "ratio")))
    out = write_results(
        "deliveries",
        {
            "args": vars(args),
            "runs": runs,
            "medians": med,
            "channel": Channel.IN_APP.value,
            "statuses": [s.value for s in DeliveryStatus],
        },
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
