"""Campaign throughput, end to end through real processes: `createCampaign` on `herald api`,
fan-out pages and channel batches on a `herald worker`, users listed by the auth-service
stand-in, history in PostgreSQL.

- in-app: a campaign to every user (default 100,000): inbox + history + live publish.
- in-app ceiling, in the same run: a bare asyncpg `COPY` of the same number of inbox rows
  (into a table shaped like inbox_items, its indexes included) plus a pipelined Redis PUBLISH
  of the same live messages, in pages of --page-size: what this machine allows at best.
- email: a campaign to 10,000 users into Postfix's smtp-sink, beside a bare aiosmtplib
  client sending the same number of messages into the same sink in the same run.

Each figure is from mutation to the last delivery recorded as sent; the fan-out stage (every
audience page dispatched) is timed on its own so the limiting stage shows.

Run: make bench-campaigns   (RabbitMQ, Redis, PostgreSQL on localhost; Postfix's smtp-sink)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import redis
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import create_async_engine

from backend.auth import mint_token
from backend.broker import purge_work_queues
from backend.config import Settings
from backend.db.history.base import DeliveryFilter
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.migrate import migrate
from backend.services.live import live_channel
from bench.common import (
    ROOT,
    bench_redis_url,
    free_port,
    median,
    redis_server_pid,
    start,
    stop,
    table,
    write_results,
)
from bench.deliveries import AMQP_URL, DB_URL, bare_smtp_rate, users_file
from bench.pipeline import SHARED_SERVERS, CpuGroups

REDIS_URL = bench_redis_url(7)
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 - a local benchmark
TEMPLATE = {
    "slug": "bench-campaign",
    "name": "Bench campaign",
    "description": "",
    "content": [
        {
            "channel": "IN_APP",
            "locale": "en",
            "title": "Hello {{ user.first_name }}",
            "body": "{{ payload.offer }} for you, {{ user.first_name }}.",
        },
        {
            "channel": "EMAIL",
            "locale": "en",
            "subject": "{{ payload.offer }}, {{ user.first_name }}!",
            "body": "Hello {{ user.first_name }},\n\n{{ payload.offer }} this week.",
            "html": "<p>Hello {{ user.first_name }},</p><p>{{ payload.offer }} this week.</p>",
        },
    ],
}
CREATE_TEMPLATE = """mutation($input: CreateTemplateInput!) { createTemplate(input: $input) {
  __typename ... on Error { code message } } }"""
CREATE = """mutation($input: CampaignInput!) { createCampaign(input: $input) {
  __typename ... on Campaign { id } ... on Error { code message field } } }"""
RUNS = """query($id: ID!) { campaign(id: $id) { status runs { eventId status recipients } } }"""


def smtp_sink(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(binary):
        raise SystemExit("Postfix's smtp-sink is missing: run scripts/setup.sh bench")
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *user, f"127.0.0.1:{port}", "1000"])
    time.sleep(0.5)
    return process


def graphql(api: str, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{api}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    return body


async def wait_sent(event_id: str, total: int, limit: float) -> tuple[float, dict[str, int]]:
    engine = create_async_engine(DB_URL)
    store = PostgresHistoryStore(engine)
    started = time.perf_counter()
    counts: dict[str, int] = {}
    try:
        while time.perf_counter() - started < limit:
            raw = await store.count_by_status(DeliveryFilter(event_id=event_id))
            counts = {status.value: n for (_, status), n in raw.items()}
            final = sum(n for s, n in counts.items() if s in ("sent", "skipped", "failed", "dead"))
            if final >= total:
                break
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()
    return time.perf_counter(), counts


async def bare_in_app_rate(total: int, page_size: int) -> float:
    """Inbox rows per second through asyncpg ``COPY`` plus one pipelined PUBLISH each, in
    pages: the ceiling an in-app campaign's writes and live messages have on this machine."""
    dsn = DB_URL.replace("postgresql+asyncpg", "postgresql")
    connection = await asyncpg.connect(dsn)
    live = redis_async.Redis.from_url(REDIS_URL)
    columns = ["delivery_id", "user_id", "seq", "event_id", "event_type", "title", "body", "data"]
    try:
        await connection.execute(
            "CREATE TEMP TABLE bare_inbox (LIKE inbox_items INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        event_id = uuid.uuid4().hex
        started = time.perf_counter()
        for first in range(0, total, page_size):
            users = [f"bench-{n}" for n in range(first, min(total, first + page_size))]
            rows = [
                (
                    f"{event_id}:{user}",
                    user,
                    1,
                    event_id,
                    "campaign",
                    f"Hello {user}",
                    f"20% off for you, {user}.",
                    "{}",
                )
                for user in users
            ]
            await connection.copy_records_to_table("bare_inbox", records=rows, columns=columns)
            async with live.pipeline(transaction=False) as pipe:
                for delivery_id, user, seq, _, kind, title, body, _ in rows:
                    message = {
                        "kind": "notification",
                        "id": delivery_id,
                        "seq": seq,
                        "eventType": kind,
                        "title": title,
                        "body": body,
                        "data": {},
                    }
                    pipe.publish(live_channel(user), orjson.dumps(message))
                await pipe.execute()
        return total / (time.perf_counter() - started)
    finally:
        await connection.close()
        await live.aclose()


def run_campaign(
    api: str,
    token: str,
    *,
    channel: str,
    audience: dict[str, Any],
    total: int,
    cpu: CpuGroups | None = None,
) -> dict[str, float]:
    """The campaign's rate; with ``cpu``, also each process's CPU per delivery (ms), read
    from /proc before the mutation and after the last delivery is recorded."""
    before = cpu.seconds() if cpu else {}
    started = time.perf_counter()
    body = graphql(
        api,
        token,
        CREATE,
        {
            "input": {
                "name": f"bench {channel} {uuid.uuid4().hex[:6]}",
                "templateSlug": TEMPLATE["slug"],
                "channels": [channel],
                "audience": audience,
                "payload": {"offer": "20% off"},
            }
        },
    )
    if not body.get("data"):
        raise RuntimeError(f"createCampaign failed: {body}")
    created = body["data"]["createCampaign"]
    if created["__typename"] != "Campaign":
        raise RuntimeError(f"createCampaign failed: {created}")
    campaign_id = created["id"]
    event_id = None
    fanned_out = float("nan")
    while time.perf_counter() - started < 900:
        runs = graphql(api, token, RUNS, {"id": campaign_id})["data"]["campaign"]["runs"]
        if runs:
            event_id = runs[0]["eventId"]
            if runs[0]["status"] == "COMPLETED":
                fanned_out = time.perf_counter() - started
                break
        time.sleep(0.25)
    assert event_id is not None
    ended, counts = asyncio.run(wait_sent(event_id, total, limit=900))
    if counts.get("sent", 0) != total:
        raise RuntimeError(f"{channel}: expected {total} sent, got {counts}")
    seconds = ended - started
    result = {"seconds": seconds, "rate": total / seconds, "fan_out_seconds": fanned_out}
    if cpu:
        after = cpu.seconds()
        for name, spent in after.items():
            result[f"cpu_ms:{name}"] = (spent - before[name]) / total * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--in-app-users", type=int, default=100_000)
    parser.add_argument("--email-users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--page-size", type=int, default=500, help="the ceiling's page size")
    args = parser.parse_args()
    # The in-app campaign goes to every user the auth service lists; the email one to some.
    args.in_app_users = max(args.in_app_users, args.email_users)

    settings = Settings(_env_file=None, database_url=DB_URL)  # type: ignore[call-arg]
    migrate(settings)
    # The auth service lists every user for the in-app campaign, and then (restarted on the
    # same port with the other file) the email campaign's users: both are `allUsers`
    # campaigns, whose listing also fills the profile cache the email senders read.
    path = users_file(args.in_app_users)
    email_path = users_file(args.email_users)
    auth_port, smtp_port, api_port = free_port(), free_port(), free_port()
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_DATABASE_URL": DB_URL,
        "HERALD_RABBITMQ_URL": AMQP_URL,
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_JWT_SECRET": JWT_SECRET,
        "HERALD_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "HERALD_SMTP_PORT": str(smtp_port),
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_USER_CACHE_TTL_SECONDS": "3600",
        "HERALD_WORKER_METRICS_PORT": "0",
    }
    asyncio.run(purge_work_queues(AMQP_URL))
    redis.Redis.from_url(REDIS_URL).flushdb()
    herald = [sys.executable, "-m", "backend.cli"]

    def auth_service(users: str) -> subprocess.Popen[bytes]:
        return start(
            [*herald, "auth-standin", "--port", str(auth_port), "--users", users],
            env,
            f"http://127.0.0.1:{auth_port}/healthz",
        )

    auth = auth_service(path)
    sink = smtp_sink(smtp_port)
    api_url = f"http://127.0.0.1:{api_port}"
    api = start([*herald, "api", "--port", str(api_port)], env, f"{api_url}/healthz")
    worker = subprocess.Popen(
        [*herald, "worker", "--concurrency", str(args.concurrency)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(8)  # the worker's processes start their clients
    token = mint_token(
        Settings(_env_file=None, jwt_secret=JWT_SECRET),  # type: ignore[call-arg]
        sub="bench-admin",
        roles=["admin"],
    )
    made = graphql(api_url, token, CREATE_TEMPLATE, {"input": TEMPLATE})["data"]
    if made["createTemplate"]["__typename"] not in ("Template", "ConflictError"):
        raise RuntimeError(f"createTemplate failed: {made}")
    runs: dict[str, list[dict[str, float]]] = {"in_app": [], "email": []}
    bare: list[float] = []
    ceiling: list[float] = []
    try:
        for round_number in range(args.rounds):
            cpu = CpuGroups(
                trees={"worker": worker.pid, "API": api.pid, "auth stand-in": auth.pid},
                alone={"Redis": redis_server_pid(REDIS_URL)},
                by_name=SHARED_SERVERS,
            )
            in_app = run_campaign(
                api_url,
                token,
                channel="IN_APP",
                audience={"allUsers": True},
                total=args.in_app_users,
                cpu=cpu,
            )
            runs["in_app"].append(in_app)
            print(f"round {round_number} in-app: {in_app}")
            ceiling.append(asyncio.run(bare_in_app_rate(args.in_app_users, args.page_size)))
            print(
                f"round {round_number} in-app ceiling (COPY + pipelined PUBLISH): "
                f"{ceiling[-1]:.0f}/s"
            )
            stop(auth)
            auth = auth_service(email_path)
            email = run_campaign(
                api_url,
                token,
                channel="EMAIL",
                audience={"allUsers": True},
                total=args.email_users,
            )
            stop(auth)
            auth = auth_service(path)
            runs["email"].append(email)
            print(f"round {round_number} email: {email}")
            bare.append(asyncio.run(bare_smtp_rate(smtp_port, args.email_users, 8)))
            print(f"round {round_number} bare smtp: {bare[-1]:.0f}/s")
    finally:
        stop(worker)
        stop(api)
        sink.terminate()
        stop(auth)
        os.unlink(path)
        os.unlink(email_path)

    def med(key: str, field: str) -> float:
        return median([r[field] for r in runs[key]])

    bare_rate = median(bare)
    ceiling_rate = median(ceiling)
    rows = [
        (
            f"in-app campaign, {args.in_app_users} users",
            f"{med('in_app', 'rate'):.0f}/s",
            f"{med('in_app', 'seconds'):.1f} s (fan-out {med('in_app', 'fan_out_seconds'):.1f} s)",
            f"{med('in_app', 'rate') / ceiling_rate:.2f} x ceiling (target >= 0.5)",
        ),
        (
            f"in-app ceiling: COPY + pipelined PUBLISH, pages of {args.page_size}",
            f"{ceiling_rate:.0f}/s",
            "",
            "",
        ),
        (
            f"email campaign, {args.email_users} users into smtp-sink",
            f"{med('email', 'rate'):.0f}/s",
            f"{med('email', 'seconds'):.1f} s (fan-out {med('email', 'fan_out_seconds'):.1f} s)",
            f"{med('email', 'rate') / bare_rate:.2f} x bare (target >= 0.7)",
        ),
        ("bare aiosmtplib, 8 connections, same sink", f"{bare_rate:.0f}/s", "", ""),
    ]
    print(table(rows, ("measure", "median rate", "total time", "ratio")))
    # Where an in-app delivery's CPU goes: steadier than the rate on a machine whose two cores
    # every process shares, so two versions compare on it better.
    names = [k.removeprefix("cpu_ms:") for k in runs["in_app"][0] if k.startswith("cpu_ms:")]
    cpu_row = tuple(f"{med('in_app', 'cpu_ms:' + n):.3f}" for n in names)
    total_cpu = sum(med("in_app", "cpu_ms:" + n) for n in names)
    print("\nin-app campaign, CPU ms per delivery (median of the rounds)")
    print(table([(f"{total_cpu:.3f}", *cpu_row)], ("all", *names)))
    out = write_results(
        "campaigns",
        {"args": vars(args), "runs": runs, "bare_smtp": bare, "in_app_ceiling": ceiling},
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
