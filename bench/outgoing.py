"""What one outgoing HTTP request costs Herald's process: a user profile fetched from the auth
service by the user directory (its cache off, so each look-up is a request), beside a bare
``httpx`` GET of the same URL, on one client, in the same run.

Every provider channel (SMS, push, chat, webhooks), the status webhooks and the auth service
go through ``httpx``; this is the CPU each such request costs the caller, measured with the
process's CPU clock in blocks that alternate the two kinds, against the development auth
stand-in on this machine (its CPU is not counted).

Run: make bench-outgoing   (python -m bench.outgoing --blocks 30 --requests 100)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys

import httpx
from redis.asyncio import Redis

from backend.config import Settings
from backend.services.users import UserDirectory
from bench.common import (
    bench_redis_url,
    cpu_us_per_call,
    free_port,
    median,
    start,
    stop,
    table,
    write_results,
)
from bench.deliveries import users_file

USERS = 200


async def measure(base_url: str, blocks: int, requests: int) -> dict[str, list[float]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, auth_url=base_url, user_cache_ttl_seconds=0, auth_retries=0
    )
    redis = Redis.from_url(bench_redis_url())
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
        directory = UserDirectory(settings, http, redis)
        profile_url = base_url + settings.auth_user_path

        async def lookup(n: int) -> None:
            if await directory.get(f"bench-{n % USERS}") is None:
                raise RuntimeError("the stand-in does not know a bench user")

        async def bare(n: int) -> None:
            response = await http.get(profile_url.format(user_id=f"bench-{n % USERS}"))
            response.raise_for_status()

        await cpu_us_per_call(requests, lookup)  # warm-up: connections, imports
        await cpu_us_per_call(requests, bare)
        found: dict[str, list[float]] = {"lookup": [], "bare": []}
        for block in range(blocks):
            order = [("lookup", lookup), ("bare", bare)]
            for name, call in order if block % 2 == 0 else reversed(order):
                found[name].append(await cpu_us_per_call(requests, call))
    await redis.aclose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30, help="blocks of each kind")
    parser.add_argument("--requests", type=int, default=100, help="requests in a block")
    args = parser.parse_args()

    path = users_file(USERS)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {"HERALD_ENVIRONMENT": "development", "HERALD_LOG_LEVEL": "WARNING"}
    auth = start(
        [sys.executable, "-m", "backend.cli", "auth-standin", "--port", str(port), "--users", path],
        env,
        f"{base_url}/healthz",
    )
    try:
        found = asyncio.run(measure(base_url, args.blocks, args.requests))
    finally:
        stop(auth)
        os.unlink(path)

    sniffio = importlib.util.find_spec("sniffio") is not None
    ratios = [a / b for a, b in zip(found["lookup"], found["bare"], strict=True)]
    rows = [
        ("user directory look-up (one GET)", f"{median(found['lookup']):.0f}"),
        ("bare httpx GET, same URL", f"{median(found['bare']):.0f}"),
        ("look-up ÷ bare (median of blocks)", f"{median(ratios):.2f}"),
    ]
    print(
        f"{args.blocks} blocks of {args.requests} requests each; "
        f"sniffio importable: {'yes' if sniffio else 'no'}"
    )
    print(table(rows, ("request", "CPU µs per request (median)")))
    out = write_results(
        "outgoing",
        {
            "blocks": args.blocks,
            "requests_per_block": args.requests,
            "sniffio_importable": sniffio,
            "httpx": httpx.__version__,
            "cpu_us_per_request": found,
            "median_cpu_us": {k: median(v) for k, v in found.items()},
            "median_ratio": median(ratios),
        },
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
