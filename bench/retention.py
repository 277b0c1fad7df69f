"""Retention sweep benchmark: how long deleting old history rows takes on PostgreSQL.

Inserts ``--old`` deliveries older than the retention and ``--recent`` newer ones into a
database of its own, then times the sweep (``PostgresHistoryStore.purge_older_than``, the
statement ``retention.sweep`` runs: batches of ``--batch`` rows, one transaction each) and
forgetting one user with ``--per-user`` deliveries among them (``scrub_user``).

Run: make bench-retention   (PostgreSQL on localhost)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import Attempt, DeliveryRecord, DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.migrate import migrate
from backend.db.session import create_engine
from bench.common import table, write_results

DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/herald_bench_retention"
INSERT_BATCH = 2_000


def delivery(n: int, *, created_at: datetime, user_id: str) -> DeliveryRecord:
    return DeliveryRecord(
        id=f"bench-{n}",
        event_id=f"e-{n // 100}",
        event_type="user_registered",
        user_id=user_id,
        channel=Channel.EMAIL,
        created_at=created_at,
        updated_at=created_at,
        status=DeliveryStatus.SENT,
        template_slug="welcome",
        subject=f"Welcome, user {n}",
        data={"plan": "pro"},
        attempts=[Attempt(1, created_at, provider="smtp")],
    )


async def fill(store: PostgresHistoryStore, *, old: int, recent: int, per_user: int) -> None:
    now = datetime.now(UTC)
    total = old + recent
    for start in range(0, total, INSERT_BATCH):
        batch = []
        for n in range(start, min(start + INSERT_BATCH, total)):
            age = timedelta(days=400 + n % 100) if n < old else timedelta(days=n % 30)
            user = "forget-me" if n % (total // per_user) == 0 else f"u-{n % 5000}"
            batch.append(delivery(n, created_at=now - age, user_id=user))
        await store.add(batch)


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    settings = Settings(_env_file=None, database_url=DB_URL)  # type: ignore[call-arg]
    engine = create_engine(settings)
    store = PostgresHistoryStore(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE deliveries"))
        await fill(store, old=args.old, recent=args.recent, per_user=args.per_user)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE deliveries"))

        started = time.perf_counter()
        scrubbed = await store.scrub_user("forget-me", "forgotten:bench")
        scrub_seconds = time.perf_counter() - started

        cutoff = datetime.now(UTC) - timedelta(days=365)
        started = time.perf_counter()
        deleted = await store.purge_older_than(cutoff, batch_size=args.batch)
        sweep_seconds = time.perf_counter() - started
        async with engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM deliveries"))).scalar_one()
    finally:
        await engine.dispose()
    return {
        "old_rows": args.old,
        "recent_rows": args.recent,
        "batch_size": args.batch,
        "deleted": deleted,
        "left": int(left),
        "sweep_seconds": round(sweep_seconds, 2),
        "rows_per_second": round(deleted / sweep_seconds),
        "scrubbed": scrubbed,
        "scrub_ms": round(scrub_seconds * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=int, default=200_000)
    parser.add_argument("--recent", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--per-user", type=int, default=500)
    args = parser.parse_args()
    migrate(Settings(_env_file=None, database_url=DB_URL))  # type: ignore[call-arg]
    result = asyncio.run(run(args))
    print(
        table(
            [
                (
                    "sweep (PostgreSQL)",
                    f"{result['deleted']:,} of {args.old + args.recent:,}",
                    f"{result['sweep_seconds']} s",
                    f"{result['rows_per_second']:,} rows/s",
                ),
                (
                    "forget one user",
                    f"{result['scrubbed']:,} scrubbed",
                    f"{result['scrub_ms']} ms",
                    "",
                ),
            ],
            ("operation", "rows", "time", "rate"),
        )
    )
    print(f"results: {write_results('retention', result)}")


if __name__ == "__main__":
    main()
