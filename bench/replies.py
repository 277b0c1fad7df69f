"""What Herald's Redis calls cost its process, by the reply parser redis-py uses (hiredis when
it is installed, else its own Python parser): the CPU of the calls the delivery path makes.

  mget      profiles of 100 users from the user cache (one MGET), as a batch's look-up does
  get       one key
  publish   a pipeline of 10 PUBLISHes of in-app notifications, as a batch's live publish does
  receive   one notification read from a pub/sub subscription, as the API's live hub does

Each is timed with the process's CPU clock, in blocks; the table gives the medians.
Compare parsers by running it in two environments (with and without hiredis), alternately.

Run: make bench-replies   (python -m bench.replies --blocks 15)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from redis.asyncio import Redis
from redis.utils import HIREDIS_AVAILABLE

from bench.common import bench_redis_url, cpu_us_per_call, median, table, write_results

PROFILE = orjson.dumps(
    {
        "id": "bench-1",
        "email": "user1@bench.example",
        "first_name": "User1",
        "last_name": "Bench",
        "login": "user1",
        "phone": None,
        "locale": "en",
        "timezone": None,
    }
)
NOTIFICATION = orjson.dumps(
    {
        "type": "notification",
        "item": {
            "id": "0" * 36,
            "title": "Welcome",
            "body": "Hello there, this is the body of an in-app notification. " * 2,
            "data": {"marker": "abc"},
        },
    }
)


async def measure(blocks: int) -> dict[str, list[float]]:
    url = bench_redis_url()
    redis, subscriber = Redis.from_url(url), Redis.from_url(url)
    prefix = "herald:bench:replies:"
    keys = [f"{prefix}{n}" for n in range(100)]
    await redis.mset(dict.fromkeys(keys, PROFILE))
    pubsub = subscriber.pubsub()
    channel = prefix + "channel"
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation

    async def publish(_: int) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(10):
                pipe.publish(prefix + "nobody", NOTIFICATION)
            await pipe.execute()

    async def receive(count: int) -> float:
        for _ in range(count):
            await redis.publish(channel, NOTIFICATION)
        begin, got = time.process_time(), 0
        while got < count:
            message = await pubsub.get_message(timeout=1)
            if message is not None and message["type"] == "message":
                got += 1
        return (time.process_time() - begin) / count * 1e6

    found: dict[str, list[float]] = {"mget": [], "get": [], "publish": [], "receive": []}
    try:
        for _ in range(blocks):
            found["mget"].append(await cpu_us_per_call(200, lambda _: redis.mget(keys)))
            found["get"].append(await cpu_us_per_call(500, lambda _: redis.get(keys[0])))
            found["publish"].append(await cpu_us_per_call(200, publish))
            found["receive"].append(await receive(500))
    finally:
        await pubsub.aclose()
        await redis.delete(*keys)
        await redis.aclose()
        await subscriber.aclose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15)
    args = parser.parse_args()
    found = asyncio.run(measure(args.blocks))
    name = "hiredis" if HIREDIS_AVAILABLE else "Python"
    labels = {
        "mget": "MGET of 100 cached profiles",
        "get": "GET of one key",
        "publish": "pipeline of 10 PUBLISHes",
        "receive": "one pub/sub message received",
    }
    print(f"reply parser: {name}; {args.blocks} blocks")
    print(
        table(
            [(labels[k], f"{median(v):.1f}") for k, v in found.items()],
            ("call", "CPU µs per call (median)"),
        )
    )
    out = write_results(
        f"redis-replies-{name.lower()}",
        {
            "parser": name,
            "blocks": args.blocks,
            "cpu_us": found,
            "median_cpu_us": {k: median(v) for k, v in found.items()},
        },
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
