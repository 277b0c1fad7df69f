"""Container healthchecks: ``python -m backend.observability.probe <check>``, exit 0 when healthy.

The image is slim (no curl), so the compose healthchecks run this with the image's Python:

- ``url URL``: the URL answers 2xx within the timeout (api ``/healthz``, the auth stand-in);
- ``worker``: the worker's metrics server answers on ``HERALD_WORKER_METRICS_PORT``;
- ``beat``: RedBeat's lock is held in Redis. Beat renews it every loop and it expires
  ``redbeat_lock_timeout`` seconds after beat stops, so a hung or dead beat turns unhealthy;
- ``redis-key KEY``: the key exists in ``HERALD_REDIS_URL`` (what ``beat`` checks).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def check_url(url: str, *, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when ``url`` answers 2xx, else why not."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except OSError as exc:
        return f"{url} did not answer: {exc}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def check_redis_key(redis_url: str, key: str, *, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when ``key`` exists, else why not."""
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        exists = bool(client.exists(key))
    except RedisError as exc:
        return f"Redis did not answer: {exc}"
    finally:
        client.close()
    return None if exists else f"{key} is not set"


def redbeat_lock_key() -> str:
    """The key RedBeat holds while a beat is scheduling, as RedBeat computes it."""
    from redbeat.schedulers import RedBeatConfig

    from backend.workers.celery_app import celery_app

    return str(RedBeatConfig(celery_app).lock_key)


def main(argv: list[str] | None = None) -> int:
    """Run one check; print the reason and return 1 when it fails."""
    parser = argparse.ArgumentParser(prog="python -m backend.observability.probe")
    checks = parser.add_subparsers(dest="check", required=True)
    checks.add_parser("url").add_argument("url")
    checks.add_parser("worker")
    checks.add_parser("beat")
    checks.add_parser("redis-key").add_argument("key")
    args = parser.parse_args(argv)

    from backend.config import get_settings

    if args.check == "url":
        problem = check_url(args.url)
    elif args.check == "worker":
        port = get_settings().worker_metrics_port
        problem = (
            check_url(f"http://127.0.0.1:{port}/metrics")
            if port
            else "HERALD_WORKER_METRICS_PORT is 0: nothing to probe"
        )
    elif args.check == "beat":
        problem = check_redis_key(get_settings().redis_url, redbeat_lock_key())
    else:
        problem = check_redis_key(get_settings().redis_url, args.key)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
