"""Realtime benchmark: sendEvent → worker → inbox → Redis → API → WebSocket subscriber.

  latency    p50 / p99 from sendEvent to the subscriber receiving the item, at a steady rate
             (after 2 s of warm-up at the first rate, not recorded)
  memory     API process RSS per idle `notifications` subscription, with N open connections
  broadcast  one event to all N subscribed users: time until the last one has it, three times:
             cold (no profile cached nor stored: every profile comes from the auth service),
             warm (the same users, their profiles cached by the cold one), and synced (the
             recipients imported by `herald recipients sync`, the Redis cache emptied: every
             profile comes from PostgreSQL, none from the auth service)
  baseline   raw Redis pub/sub in this process: publish → receive latency and messages/s

Run: make bench-realtime   (RabbitMQ, Redis, PostgreSQL on localhost); --database-url,
--amqp-url and --redis-url point it at stores of its own on a machine others benchmark on.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import redis.asyncio as redis_async
import websockets

from backend.auth import mint_token
from backend.broker import purge_work_queues
from backend.config import Settings
from backend.db.migrate import migrate
from backend.services.recipients import sync_now
from backend.services.users import CACHE_KEY_PREFIX
from backend.standins.auth_service import BULK_PROFILES_PATH
from bench import deliveries
from bench.common import (
    ROOT,
    LeanPoster,
    bench_redis_url,
    free_port,
    send_at_rate,
    start,
    stop,
    table,
    write_results,
)
from bench.deliveries import users_file

SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {"query": "subscription { notifications { ... on Notification { id data } } }"},
}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def open_subscriber(ws_url: str, origin: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        ws_url,
        subprotocols=["graphql-transport-ws"],
        origin=origin,
        max_queue=64,
        open_timeout=60,
        ping_interval=None,
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    await asyncio.wait_for(ws.recv(), 30)
    await ws.send(json.dumps(SUBSCRIBE))
    return ws


async def latency(
    api: str, ws_url: str, settings: Settings, users: int, rate: float, seconds: float
) -> list[float]:
    tokens = {
        f"bench-{i}": mint_token(settings, sub=f"bench-{i}", roles=["user"]) for i in range(users)
    }
    sockets = {u: await open_subscriber(ws_url, api, t) for u, t in tokens.items()}
    await asyncio.sleep(1)
    sent_at: dict[str, float] = {}
    received: list[float] = []

    async def reader(ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "next":
                marker = message["payload"]["data"]["notifications"]["data"]["marker"]
                if marker in sent_at:
                    received.append(time.perf_counter() - sent_at.pop(marker))

    readers = [asyncio.create_task(reader(ws)) for ws in sockets.values()]
    service = mint_token(settings, sub="bench-service", roles=["service"])
    # This load generator's own collector pauses (60 ms seen) would count as latency.
    gc.collect()
    gc.disable()
    query = "mutation($i: EventInput!) { sendEvent(input: $i) { __typename } }"
    address = urlsplit(api)
    assert address.hostname is not None and address.port is not None
    async with LeanPoster(
        address.hostname, address.port, "/graphql", {"Authorization": f"Bearer {service}"}
    ) as http:

        async def send(n: int) -> None:
            marker = uuid.uuid4().hex
            body = orjson.dumps(
                {
                    "query": query,
                    "variables": {
                        "i": {
                            "type": "user_registered",
                            "userIds": [f"bench-{n % users}"],
                            "channels": ["IN_APP"],
                            "payload": {"marker": marker},
                        }
                    },
                }
            )
            sent_at[marker] = time.perf_counter()
            await http.post(body)

        n = await send_at_rate(send, rate, seconds)
    if set(http.statuses) != {200}:
        print(f"warning: HTTP statuses {http.statuses}")
    deadline = time.perf_counter() + 30
    while sent_at and time.perf_counter() < deadline:  # noqa: ASYNC110 (a poll with a deadline)
        await asyncio.sleep(0.1)
    gc.enable()
    for task in readers:
        task.cancel()
    for ws in sockets.values():
        await ws.close()
    if sent_at:
        print(f"warning: {len(sent_at)} of {n} items never arrived")
    return received


async def memory_and_broadcasts(
    api: str, ws_url: str, api_pid: int, settings: Settings, connections: int
) -> tuple[float, dict[str, dict[str, Any]]]:
    before = rss_kb(api_pid)
    sockets = []
    batch = 200
    for start_at in range(0, connections, batch):
        sockets += await asyncio.gather(
            *(
                open_subscriber(ws_url, api, mint_token(settings, sub=f"bench-{i}", roles=["user"]))
                for i in range(start_at, min(connections, start_at + batch))
            )
        )
    await asyncio.sleep(3)
    after = rss_kb(api_pid)
    per_connection_kb = (after - before) / connections
    try:
        # Cold: no profile of these users cached (an earlier run within the cache's lifetime,
        # or the latency runs' users, would otherwise make part of it warm).
        forgotten = await forget_profiles(settings.redis_url)
        stored = await forget_recipients()
        print(f"cold broadcast: {forgotten} cached profiles, {stored} recipients forgotten first")
        cold = await broadcast(api, settings, sockets, "cold")
        # Warm: the same users again, every profile now cached by the cold broadcast.
        warm = await broadcast(api, settings, sockets, "warm")
        # Synced: recipients imported from the auth service's user list, Redis emptied.
        started = time.perf_counter()
        sync = await sync_now(settings)
        sync_seconds = time.perf_counter() - started
        print(f"recipients sync: {sync.recipients_synced} in {sync_seconds:.2f} s ({sync.status})")
        forgotten = await forget_profiles(settings.redis_url)
        print(f"synced broadcast: {forgotten} cached profiles forgotten first")
        synced = await broadcast(api, settings, sockets, "synced")
        synced["sync_s"] = sync_seconds
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return per_connection_kb, {"cold": cold, "warm": warm, "synced": synced}


async def forget_profiles(redis_url: str) -> int:
    """Delete the cached profiles of the benchmark's users; how many there were."""
    client = redis_async.Redis.from_url(redis_url)
    forgotten = 0
    try:
        keys = [
            key async for key in client.scan_iter(match=CACHE_KEY_PREFIX + "bench-*", count=1000)
        ]
        for n in range(0, len(keys), 1000):
            forgotten += await client.delete(*keys[n : n + 1000])
    finally:
        await client.aclose()
    return forgotten


# Where the benchmark's stores are (the shared benchmark ones unless the options say).
STORES = {"database": deliveries.DB_URL, "amqp": deliveries.AMQP_URL}


async def forget_recipients() -> int:
    """Delete the benchmark users' recipients (PostgreSQL); how many there were."""
    conn = await asyncpg.connect(STORES["database"].replace("+asyncpg", ""))
    try:
        status = await conn.execute("DELETE FROM recipients WHERE user_id LIKE 'bench-%'")
    finally:
        await conn.close()
    return int(status.rsplit(" ", 1)[-1])


async def broadcast(
    api: str, settings: Settings, sockets: list[websockets.ClientConnection], label: str
) -> dict[str, Any]:
    """One event to every socket's user; the time until the last socket has it."""
    marker = f"{label}-{uuid.uuid4().hex}"
    remaining = len(sockets)
    done = asyncio.Event()

    async def reader(ws: websockets.ClientConnection) -> None:
        nonlocal remaining
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "ping":
                await ws.send('{"type": "pong"}')
            if message.get("type") != "next":
                continue
            item = ((message.get("payload") or {}).get("data") or {}).get("notifications") or {}
            # Only this broadcast's item counts: a late one from an earlier run is not it.
            if (item.get("data") or {}).get("marker") == marker:
                remaining -= 1
                if remaining == 0:
                    done.set()
                return

    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    # Let all 10,000 readers start waiting first: starting them is this load generator's own
    # work, and would otherwise be counted in the broadcast's time.
    await asyncio.sleep(1)
    service = mint_token(settings, sub="bench-service", roles=["service"])
    started = time.perf_counter()
    started_wall = time.time()
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        r = await http.post(
            "/graphql",
            headers={"Authorization": f"Bearer {service}"},
            json={
                "query": "mutation($i: EventInput!) { sendEvent(input: $i) "
                "{ __typename ... on EventAccepted { eventId } } }",
                "variables": {
                    "i": {
                        "type": "user_registered",
                        "channels": ["IN_APP"],
                        "userIds": [f"bench-{i}" for i in range(len(sockets))],
                        "payload": {"marker": marker},
                    }
                },
            },
        )
        assert r.json()["data"]["sendEvent"]["__typename"] == "EventAccepted", r.text
    accepted = time.perf_counter() - started
    event_id = r.json()["data"]["sendEvent"]["eventId"]
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        print(f"warning: {remaining} subscribers never got the {label} broadcast")
    seconds = time.perf_counter() - started
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    # Where the time went: the workers' part ends with the last delivery marked sent (the
    # inbox item is written and published just before); the rest is the API's fan-out.
    conn = await asyncpg.connect(STORES["database"].replace("+asyncpg", ""))
    last_sent = await conn.fetchval(
        "SELECT extract(epoch FROM max(updated_at)) FROM deliveries WHERE event_id = $1", event_id
    )
    await conn.close()
    return {
        "seconds": seconds,
        "reached": len(sockets) - remaining,
        "accepted_s": accepted,
        "workers_done_s": float(last_sent) - started_wall if last_sent else float("nan"),
    }


async def redis_baseline(count: int) -> tuple[float, float]:
    client = redis_async.Redis.from_url("redis://127.0.0.1:6379/0")
    pubsub = client.pubsub()
    channel = f"herald:bench:{uuid.uuid4().hex}"
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)
    latencies = []
    for _ in range(200):
        t = time.perf_counter()
        await client.publish(channel, b"x")
        while (await pubsub.get_message(timeout=1)) is None:
            pass
        latencies.append(time.perf_counter() - t)
    started = time.perf_counter()
    async with client.pipeline(transaction=False) as pipe:
        for _ in range(count):
            pipe.publish(channel, b"x")
        await pipe.execute()
    got = 0
    while got < count:
        if await pubsub.get_message(timeout=5) is None:
            break
        got += 1
    rate = got / (time.perf_counter() - started)
    await pubsub.aclose()
    await client.aclose()
    return statistics.median(latencies) * 1000, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument(
        "--also-rates",
        default="50,100,150",
        help="lower rates measured first, to show where latency turns (comma-separated)",
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--latency-users", type=int, default=50)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--no-bulk-profiles",
        action="store_true",
        help="fetch profiles one request each, as from an auth service without a bulk endpoint",
    )
    parser.add_argument("--database-url", default=deliveries.DB_URL)
    parser.add_argument("--amqp-url", default=deliveries.AMQP_URL)
    parser.add_argument("--redis-url", default=bench_redis_url())
    args = parser.parse_args()
    STORES.update(database=args.database_url, amqp=args.amqp_url)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    api_port, auth_port = free_port(), free_port()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=args.database_url,
        redis_url=args.redis_url,
        auth_url=f"http://127.0.0.1:{auth_port}",
        recipient_sync_page_size=1000,
    )
    migrate(settings)
    path = users_file(max(args.connections, args.latency_users))
    api = f"http://127.0.0.1:{api_port}"
    env = {
        "HERALD_ENVIRONMENT": "development",
        "HERALD_DATABASE_URL": args.database_url,
        "HERALD_RABBITMQ_URL": args.amqp_url,
        "HERALD_REDIS_URL": args.redis_url,
        "HERALD_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_ALLOWED_ORIGINS": json.dumps([api]),
        "HERALD_USER_CACHE_TTL_SECONDS": "3600",
        # The stand-in's bulk endpoint, as an auth service offering one would be used.
        "HERALD_AUTH_BULK_PROFILES_PATH": "" if args.no_bulk_profiles else BULK_PROFILES_PATH,
        # Thousands of sockets from one load generator: the per-IP connect limit is not measured.
        "HERALD_WS_CONNECT_RATE_PER_SECOND": "0",
    }
    asyncio.run(purge_work_queues(args.amqp_url))
    herald = [sys.executable, "-m", "backend.cli"]
    auth = start(
        [*herald, "auth-standin", "--port", str(auth_port), "--users", path],
        env,
        f"http://127.0.0.1:{auth_port}/healthz",
    )
    server = start([*herald, "api", "--port", str(api_port)], env, f"{api}/healthz")
    worker = subprocess.Popen(
        [*herald, "worker", "--concurrency", "2"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(8)
    ws_url = api.replace("http", "ws") + "/graphql"
    try:
        base_latency_ms, base_rate = asyncio.run(redis_baseline(50_000))
        rates = [float(r) for r in args.also_rates.split(",") if r] + [args.rate]
        # Warm-up, not recorded: each user's first event finds caches cold (the profile from
        # the auth service, connections); the figures are for a steady rate.
        asyncio.run(latency(api, ws_url, settings, args.latency_users, rates[0], 2))
        by_rate = {
            rate: asyncio.run(
                latency(api, ws_url, settings, args.latency_users, rate, args.seconds)
            )
            for rate in rates
        }
        received = by_rate[args.rate]
        per_kb, broadcasts = asyncio.run(
            memory_and_broadcasts(api, ws_url, server.pid, settings, args.connections)
        )
    finally:
        worker.terminate()
        worker.wait(30)
        stop(server)
        stop(auth)
        os.unlink(path)
    p50 = percentile(received, 50) * 1000
    p99 = percentile(received, 99) * 1000
    sweep = {
        rate: (percentile(got, 50) * 1000, percentile(got, 99) * 1000, len(got))
        for rate, got in by_rate.items()
    }
    crossing = p99_crossing(sweep, 60.0)
    cold_over_warm = broadcasts["cold"]["seconds"] / broadcasts["warm"]["seconds"]
    synced_over_warm = broadcasts["synced"]["seconds"] / broadcasts["warm"]["seconds"]
    targets = {
        "warm": "target ≤ 2 s",
        "cold": "target ≤ 3 times warm",
        "synced": "cold fan-out, recipients synced, Redis empty: target ≤ 1.5 times warm",
    }
    rows = [
        (
            "raw Redis pub/sub (this process)",
            f"{base_latency_ms:.2f} ms p50",
            f"{base_rate:.0f} msg/s",
            "",
        ),
        *(
            (
                f"sendEvent → subscriber at {rate:.0f}/s",
                f"{low:.1f} ms p50",
                f"{high:.1f} ms p99",
                "target p50 ≤ 15, p99 ≤ 60" if rate == args.rate else "",
            )
            for rate, (low, high, _) in sweep.items()
        ),
        ("rate at which p99 crosses 60 ms", crossing, "", "(bench.pipeline bisects it)"),
        (
            f"memory per idle subscription ({args.connections})",
            f"{per_kb:.1f} KB",
            "",
            "target ≤ 30 KB",
        ),
        *(
            row
            for label, run in broadcasts.items()
            for row in (
                (
                    f"one event to {args.connections} subscribers, {label}",
                    f"{run['seconds']:.2f} s",
                    f"{run['reached']} reached",
                    targets[label],
                ),
                ("  of which: sendEvent accepted", f"{run['accepted_s']:.2f} s", "", ""),
                (
                    "  of which: workers done (last marked sent)",
                    f"{run['workers_done_s']:.2f} s",
                    "",
                    "the rest: API fan-out",
                ),
            )
        ),
        ("cold ÷ warm broadcast", f"{cold_over_warm:.2f}", "", "target ≤ 3"),
        (
            "recipients sync before the synced broadcast",
            f"{broadcasts['synced']['sync_s']:.2f} s",
            "",
            "",
        ),
        ("synced ÷ warm broadcast", f"{synced_over_warm:.2f}", "", "target ≤ 1.5"),
    ]
    print(table(rows, ("measure", "value", "", "target")))
    out = write_results(
        "realtime",
        {
            "args": vars(args),
            "redis_p50_ms": base_latency_ms,
            "redis_rate": base_rate,
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
            "samples": len(received),
            "latency_by_rate": {
                str(rate): {"p50_ms": low, "p99_ms": high, "samples": n}
                for rate, (low, high, n) in sweep.items()
            },
            "p99_crosses_60_ms": crossing,
            "kb_per_subscription": per_kb,
            # cold: no profile cached nor stored; warm: the same users right after, all cached;
            # synced: recipients synced into PostgreSQL, the Redis cache empty.
            "broadcast": {
                **broadcasts,
                "cold_over_warm": cold_over_warm,
                "synced_over_warm": synced_over_warm,
            },
        },
    )
    print(f"\nwritten to {out}")


def p99_crossing(sweep: dict[float, tuple[float, float, int]], limit_ms: float) -> str:
    """Where p99 first goes over ``limit_ms`` among the rates tried (rate → p50, p99, count)."""
    ordered = sorted(sweep.items())
    over = [rate for rate, (_, p99, _) in ordered if p99 > limit_ms]
    if not over:
        return f"above {ordered[-1][0]:.0f}/s (the highest tried)"
    held = [rate for rate, (_, p99, _) in ordered if p99 <= limit_ms and rate < over[0]]
    if not held:
        return f"below {over[0]:.0f}/s (the lowest tried)"
    return f"between {held[-1]:.0f} and {over[0]:.0f}/s"


if __name__ == "__main__":
    main()
