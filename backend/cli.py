"""``herald``: one command for every process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import click

from backend.config import Environment, get_settings


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
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="log each request (herald dev turns it on; off in production, where nginx logs them)",
)
def api(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the GraphQL API (HTTP and WebSocket), /healthz and /readyz."""
    import uvicorn

    settings = get_settings()  # fail fast on bad settings
    uvicorn.run(
        "backend.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        access_log=access_log,
        proxy_headers=True,
        # uvicorn's own lines (one per WebSocket opened and closed) follow HERALD_LOG_LEVEL too.
        log_level=settings.log_level.lower(),
    )


@main.command()
@click.option("--concurrency", default=None, type=int, help="worker processes (default: cores)")
@click.option("--queues", default=None, help="comma-separated queues (default: all)")
def worker(concurrency: int | None, queues: str | None) -> None:
    """Run a Celery worker (its metrics on HERALD_WORKER_METRICS_PORT) and, beside it, the
    dispatch queue's consumers (HERALD_DISPATCH_CONSUMERS processes, default as many as the
    pool has), which take events off that queue in batches."""
    # Before anything imports the metrics: the pool's processes must count in shared files.
    from backend.observability.workers import setup_worker

    settings = get_settings()
    setup_worker(settings)
    from backend.queues import DISPATCH, WORK_QUEUES
    from backend.workers.celery_app import celery_app
    from backend.workers.dispatch_consumer import Supervisor

    # A node name of this process's own: with Celery's default (celery@<host>) a second
    # worker on the same host and virtual host cannot declare the remote-control queue that
    # name owns (RESOURCE_LOCKED: an exclusive queue) and exits at start.
    argv = [
        "worker",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        f"--hostname=herald-{os.getpid()}@%h",
    ]
    if settings.log_format == "json":
        argv.insert(0, "--quiet")  # Celery's own option: no startup banner, not a JSON line
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    wanted = [q.strip() for q in queues.split(",") if q.strip()] if queues else list(WORK_QUEUES)
    # The dispatch queue is the consumers' (backend/workers/dispatch_consumer.py), not the pool's.
    celery_queues = [q for q in wanted if q != DISPATCH]
    supervisor = None
    if DISPATCH in wanted:
        count = settings.dispatch_consumers or concurrency or os.cpu_count() or 1
        supervisor = Supervisor(count)
        supervisor.start()
    if celery_queues:
        argv.append(f"--queues={','.join(celery_queues)}")
    try:
        if celery_queues:
            celery_app.worker_main(argv)
        else:
            stop = {signal.SIGTERM, signal.SIGINT}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigwait(stop)
    finally:
        if supervisor is not None:
            supervisor.stop()


@main.command("dispatch-consumer")
def dispatch_consumer() -> None:
    """Consume the dispatch queue in batches (``herald worker`` starts these itself)."""
    from backend.observability.logs import configure_logging
    from backend.observability.tracing import configure_tracing

    settings = get_settings()
    configure_logging(settings)
    configure_tracing(settings, "herald-worker")
    from backend.workers.dispatch_consumer import consume

    consume()


@main.command()
def beat() -> None:
    """Run Celery beat with RedBeat, kept in step with the campaigns in PostgreSQL."""
    from backend.observability.workers import setup_beat

    setup_beat(get_settings())
    from backend.workers.celery_app import celery_app

    celery_app.start(
        ["beat", "--loglevel=INFO", "--scheduler=backend.workers.schedules.HeraldScheduler"]
    )


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
@click.option("--tenant", default=None, help="bind the token to this tenant")
def token(sub: str, roles: tuple[str, ...], ttl: int, tenant: str | None) -> None:
    """Print a JWT signed with the configured key (development and scripts)."""
    from backend.auth import mint_token

    click.echo(
        mint_token(get_settings(), sub=sub, roles=roles, ttl=timedelta(seconds=ttl), tenant=tenant)
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Everything for development in one command: migrations, the auth-service stand-in, the
    SMTP sink, api, worker and beat."""
    from backend.auth import mint_token
    from backend.db.migrate import migrate as run

    settings = get_settings()
    if not settings.is_development:
        raise click.UsageError("herald dev runs only with HERALD_ENVIRONMENT=development")
    run(settings)
    exe = [sys.executable, "-m", "backend.cli"]
    # The stand-ins first: the worker looks users up and sends mail as soon as it starts.
    procs = {
        "auth-standin": subprocess.Popen([*exe, "auth-standin", "--port", "8001"]),
        "smtp-sink": subprocess.Popen([*exe, "smtp-sink"]),
        "api": subprocess.Popen([*exe, "api", "--host", host, "--port", str(port), "--access-log"]),
        "worker": subprocess.Popen([*exe, "worker", "--concurrency", "2"]),
        "beat": subprocess.Popen([*exe, "beat"]),
    }
    manager = mint_token(settings, sub="demo-manager", roles=["manager"], ttl=timedelta(days=1))
    service = mint_token(settings, sub="demo-service", roles=["service"], ttl=timedelta(days=1))
    click.echo(
        f"\nHerald is starting:\n  GraphiQL  http://{host}:{port}/graphql\n"
        f"  health    http://{host}:{port}/readyz\n"
        f"  mailbox   http://127.0.0.1:8025/  (development SMTP sink on :1025)\n"
        f"  auth      http://127.0.0.1:8001/api/v1/auth/dev/users  (auth-service stand-in)\n"
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


@main.group()
def recipients() -> None:
    """Recipients: the user profiles and addresses Herald keeps."""


@recipients.command("sync")
def recipients_sync() -> None:
    """Import the auth service's user list into recipients, page by page (re-running is safe)."""
    import asyncio

    from backend.services.recipients import SyncStatus, sync_now

    sync = asyncio.run(sync_now(get_settings(), on_page=_echo_progress))
    click.echo(
        f"recipient sync {sync.id}: {sync.status}, {sync.recipients_synced} recipients "
        f"in {sync.pages_done} pages"
    )
    if sync.status != SyncStatus.SUCCEEDED.value:
        raise click.ClickException(sync.error or "the sync did not finish")


def _echo_progress(pages: int, synced: int) -> None:
    click.echo(f"page {pages}: {synced} recipients so far")


@main.command("auth-standin")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option(
    "--users",
    "users_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON list of users with roles (default: the bundled demo users)",
)
@click.option(
    "--access-ttl",
    default=900,
    show_default=True,
    type=click.IntRange(1),
    help="seconds the access tokens from its login and refresh endpoints live",
)
def auth_standin(host: str, port: int, users_file: Path | None, access_ttl: int) -> None:
    """Serve the development stand-in for the auth service: profiles, sign-in and demo tokens."""
    settings = get_settings()
    if settings.environment is Environment.PRODUCTION:
        raise click.UsageError(
            "herald auth-standin is a development stand-in and never runs with "
            "HERALD_ENVIRONMENT=production"
        )
    import uvicorn

    from backend.standins.auth_service import DEMO_USERS_FILE, create_auth_standin

    app = create_auth_standin(
        users_file or DEMO_USERS_FILE, settings, access_ttl=timedelta(seconds=access_ttl)
    )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=settings.log_level.lower())


@main.command()
@click.option("--host", default=None, help="default: HERALD_BOUNCE_SMTP_HOST")
@click.option("--port", default=None, type=int, help="default: HERALD_BOUNCE_SMTP_PORT")
def bounces(host: str | None, port: int | None) -> None:
    """Take bounce reports (RFC 3464 DSNs) and complaints (ARF) over SMTP for the bounce
    domain (HERALD_EMAIL_BOUNCE_DOMAIN) and apply them to deliveries and suppressions."""
    import asyncio
    import contextlib

    from backend.bounce_listener import serve

    settings = get_settings()
    if not settings.email_bounce_domain:
        raise click.UsageError("herald bounces needs HERALD_EMAIL_BOUNCE_DOMAIN")

    async def run() -> None:
        # SIGTERM (docker stop, systemd, Kubernetes) stops it as Ctrl-C does: the listener
        # closes and the clients are closed, instead of the process ending where it stands.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(
                settings,
                host=host or settings.bounce_smtp_host,
                port=port or settings.bounce_smtp_port,
            )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@main.command("smtp-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--smtp-port", default=1025, show_default=True, type=int)
@click.option("--http-port", default=8025, show_default=True, type=int)
def smtp_sink(host: str, smtp_port: int, http_port: int) -> None:
    """Serve the development SMTP sink and a page to read what it received."""
    if get_settings().environment is Environment.PRODUCTION:
        raise click.UsageError("herald smtp-sink is a development stand-in")
    import uvicorn

    from backend.standins.smtp_sink import Mailbox, create_mailbox_app, start_smtp

    mailbox = Mailbox()
    controller = start_smtp(mailbox, host=host, port=smtp_port)
    try:
        uvicorn.run(create_mailbox_app(mailbox), host=host, port=http_port, access_log=False)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
