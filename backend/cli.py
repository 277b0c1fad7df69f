"""``herald``: one command for every process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import click

from backend.config import get_settings


@click.group()
def main() -> None:
    """Herald, a GraphQL-first notification platform."""
    logging.basicConfig(
        level=os.environ.get("HERALD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn processes")
def api(host: str, port: int, workers: int) -> None:
    """Serve the GraphQL API (HTTP and WebSocket), /healthz and /readyz."""
    import uvicorn

    get_settings()  # fail fast on bad settings
    uvicorn.run(
        "backend.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        access_log=False,
        proxy_headers=True,
        log_level="info",
    )


@main.command()
@click.option("--concurrency", default=None, type=int, help="worker processes (default: cores)")
@click.option("--queues", default=None, help="comma-separated queues (default: all)")
def worker(concurrency: int | None, queues: str | None) -> None:
    """Run a Celery worker."""
    from backend.workers.celery_app import celery_app

    argv = ["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if queues:
        argv.append(f"--queues={queues}")
    celery_app.worker_main(argv)


@main.command()
def beat() -> None:
    """Run Celery beat with the RedBeat scheduler."""
    from backend.workers.celery_app import celery_app

    celery_app.start(["beat", "--loglevel=INFO", "--scheduler=redbeat.RedBeatScheduler"])


@main.command()
@click.option("--revision", default="head", show_default=True)
def migrate(revision: str) -> None:
    """Create the database if missing and apply migrations."""
    from backend.db.migrate import migrate as run

    run(get_settings(), revision=revision)
    click.echo(f"database migrated to {revision}")


@main.command()
@click.option("--sub", required=True, help="user id (the token's subject)")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["admin", "manager", "service", "user"]),
    help="repeatable",
)
@click.option("--ttl", default=3600, show_default=True, type=int, help="lifetime in seconds")
def token(sub: str, roles: tuple[str, ...], ttl: int) -> None:
    """Print a JWT signed with the configured key (development and scripts)."""
    from backend.auth import mint_token

    click.echo(mint_token(get_settings(), sub=sub, roles=roles, ttl=timedelta(seconds=ttl)))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Everything for development in one command: migrations, api, worker and beat."""
    from backend.auth import mint_token
    from backend.db.migrate import migrate as run

    settings = get_settings()
    if not settings.is_development:
        raise click.UsageError("herald dev runs only with HERALD_ENVIRONMENT=development")
    run(settings)
    exe = [sys.executable, "-m", "backend.cli"]
    procs = {
        "api": subprocess.Popen([*exe, "api", "--host", host, "--port", str(port)]),
        "worker": subprocess.Popen([*exe, "worker", "--concurrency", "2"]),
        "beat": subprocess.Popen([*exe, "beat"]),
    }
    manager = mint_token(settings, sub="demo-manager", roles=["manager"], ttl=timedelta(days=1))
    service = mint_token(settings, sub="demo-service", roles=["service"], ttl=timedelta(days=1))
    click.echo(
        f"\nHerald is starting:\n  GraphiQL  http://{host}:{port}/graphql\n"
        f"  health    http://{host}:{port}/readyz\n"
        f"\nDemo tokens (valid one day), for the GraphiQL headers tab:\n"
        f'  manager  {{"Authorization": "Bearer {manager}"}}\n'
        f'  service  {{"Authorization": "Bearer {service}"}}\n'
    )

    def stop(*_: object) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        for name, proc in procs.items():
            if proc.poll() is not None:
                click.echo(f"{name} exited with {proc.returncode}; stopping the others", err=True)
    finally:
        stop()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
