"""Workflow engine overhead: the three-step workflow (in-app, a 2 s delay, an email when the
in-app message is still unread) against the same messages sent by a one-step event type (in-app
and email at once), through real worker and beat processes, in the same run.

Each phase publishes ``--runs`` events of one user each (as the API would: dispatch task
messages) and waits until every message is final; the figure is the worker's CPU time (its
process tree, read from /proc) per delivered message, and the ratio of the two phases (target:
three-step at most 2x one-step). No one reads the in-app messages, so every run sends both, and
both phases deliver 2 x ``--runs`` messages. Beat's CPU is shown apart (it runs the release
sweep that ends the delays).

Run: make bench-workflows   (RabbitMQ, Redis, PostgreSQL on localhost)
     python -m bench.workflows --runs 1000 --database herald_bench_wf   (a shorter run)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.auth import Principal
from backend.broker import Broker, purge_work_queues
from backend.config import Settings
from backend.db.migrate import migrate
from backend.db.models import EventType, Template
from backend.db.session import create_sessionmaker
from backend.queues import DISPATCH, TASK_DISPATCH
from backend.services import workflows
from bench.common import ROOT, free_port, start, stop, table, write_results
from bench.deliveries import users_file
from bench.pipeline import CpuGroups

THREE_STEPS = [
    {"type": "send", "name": "inapp", "channel": "in_app"},
    {"type": "delay", "name": "wait", "duration": "2s"},
    {
        "type": "branch",
        "name": "unread",
        "condition": "steps.inapp.read == false",
        "then": [{"type": "send", "name": "email", "channel": "email"}],
    },
]
FINAL = ("sent", "skipped", "failed", "dead")


async def set_up(db_url: str, suffix: str) -> tuple[str, str, str, str]:
    """A template, a one-step type (in-app + email) and a three-step type: (template, one,
    three, the three-step workflow's id)."""
    engine = create_async_engine(db_url)
    maker = create_sessionmaker(engine)
    slug, one, three = f"wfb-{suffix}", f"wfb.one.{suffix}", f"wfb.three.{suffix}"
    actor = Principal(user_id="bench", roles=frozenset({"admin"}))
    try:
        async with maker() as session:
            session.add(
                Template(
                    slug=slug,
                    name=slug,
                    content=[
                        {
                            "channel": "in_app",
                            "locale": "en",
                            "title": "Hi",
                            "body": "{{ user.first_name }}",
                        },
                        {
                            "channel": "email",
                            "locale": "en",
                            "subject": "Still unread, {{ user.first_name }}",
                            "body": "You have a message waiting.",
                        },
                    ],
                )
            )
            for name, channels in ((one, ["in_app", "email"]), (three, ["in_app"])):
                row = EventType(name=name, template_slug=slug, channels=channels)
                session.add(row)
                await session.flush()
                await workflows.keep_plain_workflow(session, actor=actor, event_type=row)
            saved = await workflows.save_workflow(
                session,
                actor=actor,
                data=workflows.WorkflowData(event_type=three, steps=THREE_STEPS),
            )
            await session.commit()
            return slug, one, three, str(saved.id)
    finally:
        await engine.dispose()


async def publish(
    amqp_url: str,
    *,
    event_type: str,
    slug: str,
    channels: list[str],
    users: int,
    workflow_id: str | None,
) -> None:
    broker = Broker(amqp_url)
    await broker.start()
    try:
        for start_at in range(0, users, 1000):
            batch = []
            for i in range(start_at, min(users, start_at + 1000)):
                event_id = str(uuid.uuid4())
                envelope: dict[str, Any] = {
                    "id": event_id,
                    "type": event_type,
                    "user_ids": [f"bench-{i}"],
                    "payload": {},
                    "template_slug": slug,
                    "channels": channels,
                    "locale": None,
                    "critical": False,
                    "created_at": datetime.now(UTC).isoformat(),
                    "actor": "bench",
                }
                if workflow_id is not None:
                    envelope["workflow_id"] = workflow_id
                batch.append(
                    broker.publish_task(
                        DISPATCH, TASK_DISPATCH, kwargs={"event": envelope}, task_id=event_id
                    )
                )
            await asyncio.gather(*batch)
    finally:
        await broker.close()


async def wait_final(db_url: str, event_type: str, total: int, seconds: float) -> dict[str, int]:
    """Wait until the type's deliveries are all final; their counts by status."""
    engine = create_async_engine(db_url)
    started = time.monotonic()
    counts: dict[str, int] = {}
    try:
        while time.monotonic() - started < seconds:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT status, count(*) FROM deliveries WHERE event_type = :t "
                        "GROUP BY status"
                    ),
                    {"t": event_type},
                )
                counts = {s: n for s, n in rows.all()}
            if sum(n for s, n in counts.items() if s in FINAL) >= total:
                return counts
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()
    raise RuntimeError(f"{event_type}: not done after {seconds} s: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--database", default="herald_bench")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/herald_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.database}"
    migrate(Settings(_env_file=None, database_url=db_url))  # type: ignore[call-arg]
    suffix = uuid.uuid4().hex[:8]
    slug, one, three, workflow_id = asyncio.run(set_up(db_url, suffix))
    path = users_file(args.runs)
    auth_port, smtp_port, sink_http = free_port(), free_port(), free_port()
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_DATABASE_URL": db_url,
        "HERALD_RABBITMQ_URL": args.amqp_url,
        "HERALD_REDIS_URL": args.redis_url,
        "HERALD_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "HERALD_SMTP_PORT": str(smtp_port),
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_USER_CACHE_TTL_SECONDS": "3600",
    }
    asyncio.run(purge_work_queues(args.amqp_url))
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

    def spawn(command: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*herald, command, *extra],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    worker = spawn("worker", "--concurrency", str(args.concurrency))
    beat = spawn("beat")
    time.sleep(8)  # the worker's processes start their clients
    cpu = CpuGroups(trees={"worker": worker.pid, "beat": beat.pid})
    phases: dict[str, dict[str, Any]] = {}
    try:
        for label, event_type, channels, wf in (
            ("one-step (in-app + email)", one, ["in_app", "email"], None),
            ("three-step workflow", three, ["in_app"], workflow_id),
        ):
            before, started = cpu.seconds(), time.perf_counter()
            asyncio.run(
                publish(
                    args.amqp_url,
                    event_type=event_type,
                    slug=slug,
                    channels=channels,
                    users=args.runs,
                    workflow_id=wf,
                )
            )
            counts = asyncio.run(wait_final(db_url, event_type, 2 * args.runs, seconds=1800))
            wall = time.perf_counter() - started
            after = cpu.seconds()
            delivered = counts.get("sent", 0)
            phases[label] = {
                "runs": args.runs,
                "delivered": delivered,
                "statuses": counts,
                "wall_seconds": wall,
                "worker_cpu_seconds": after["worker"] - before["worker"],
                "beat_cpu_seconds": after["beat"] - before["beat"],
            }
            print(f"{label}: {delivered} delivered in {wall:.1f} s", flush=True)
    finally:
        for process in (beat, worker):
            process.terminate()
            process.wait(30)
        stop(sink)
        stop(auth)
        os.unlink(path)

    base = phases["one-step (in-app + email)"]
    per = {k: v["worker_cpu_seconds"] / max(v["delivered"], 1) * 1000 for k, v in phases.items()}
    rows = [
        (
            label,
            str(v["runs"]),
            str(v["delivered"]),
            f"{v['wall_seconds']:.1f}",
            f"{v['worker_cpu_seconds']:.1f}",
            f"{per[label]:.2f}",
            f"{per[label] / per['one-step (in-app + email)']:.2f}x",
            f"{v['beat_cpu_seconds']:.1f}",
        )
        for label, v in phases.items()
    ]
    print(
        table(
            rows,
            (
                "phase",
                "events",
                "delivered",
                "wall s",
                "worker CPU s",
                "worker CPU ms/message",
                "vs one-step",
                "beat CPU s",
            ),
        )
    )
    out = write_results(
        "workflows",
        {
            "args": vars(args),
            "phases": phases,
            "worker_cpu_ms_per_message": per,
            "ratio": per["three-step workflow"] / per["one-step (in-app + email)"],
            "baseline_delivered": base["delivered"],
        },
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
