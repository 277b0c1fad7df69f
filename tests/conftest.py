"""Test infrastructure: a real PostgreSQL database for the session (migrated once), each test
inside a transaction that is rolled back; the real Redis and RabbitMQ; live API processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from backend.app import create_app
from backend.auth import TokenVerifier
from backend.config import Settings
from backend.db.migrate import alembic_config, ensure_database
from backend.db.session import create_engine
from backend.schema.context import Services

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE = os.environ.get("HERALD_TEST_DATABASE", "herald_test")
TEST_DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{TEST_DATABASE}"
# The tests' own RabbitMQ virtual host (scripts/setup.sh test creates it): a `herald dev`
# running on the same machine never takes the tests' messages, nor they its.
TEST_RABBITMQ_URL = os.environ.get(
    "HERALD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/herald_test"
)

# The tests' Redis database: RedBeat's schedule and lock live there, so a test session and a
# `herald dev` (database 0) on the same machine never share a beat.
TEST_REDIS_URL = os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": TEST_DATABASE_URL,
        "rabbitmq_url": TEST_RABBITMQ_URL,
        "redis_url": TEST_REDIS_URL,
        "jwt_secret": "test-secret-for-the-suite-0123456789abcdef",
        "graphiql": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def _reset_database() -> None:
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            TEST_DATABASE,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}"')
    finally:
        await conn.close()
    await ensure_database(TEST_DATABASE_URL)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    from alembic import command

    await _reset_database()
    await asyncio.to_thread(command.upgrade, alembic_config(settings.database_url), "head")
    engine = create_engine(settings, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            if transaction.is_active:
                await transaction.rollback()


def savepoint_sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to a transaction of ``connection``: a service's commit releases a
    savepoint, and rolling the transaction back undoes everything."""
    return async_sessionmaker(
        bind=connection,
        expire_on_commit=False,
        autoflush=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to the test's transaction."""
    return savepoint_sessionmaker(connection)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as s:
        yield s


@pytest.fixture
async def redis() -> AsyncIterator[redis_async.Redis]:
    """A client of the test Redis server (``HERALD_TEST_REDIS_URL``)."""
    client = redis_async.Redis.from_url(TEST_REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def make_services(settings: Settings, engine: AsyncEngine) -> Services:
    from backend.db.session import create_sessionmaker

    return Services(
        settings=settings,
        verifier=TokenVerifier(settings),
        sessionmaker=create_sessionmaker(engine),
        engine=engine,
    )


@asynccontextmanager
async def started_app(settings: Settings, services: Services) -> AsyncIterator[Any]:
    """The API in-process, its lifespan started."""
    application = create_app(settings, services=services)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def in_process_client(
    app: Any,
    services: Services,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    peer: tuple[str, int] = ("127.0.0.1", 123),
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app in-process, calling from ``peer``, the app's database work
    in ``sessionmaker``'s sessions (the test's transaction)."""
    original = services.sessionmaker
    services.sessionmaker = sessionmaker
    transport = httpx.ASGITransport(app=app, client=peer)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as c:
            yield c
    finally:
        services.sessionmaker = original


@pytest.fixture(scope="session")
async def app_services(settings: Settings, engine: AsyncEngine) -> Services:
    return make_services(settings, engine)


@pytest.fixture(scope="session")
async def app(settings: Settings, app_services: Services) -> AsyncIterator[Any]:
    async with started_app(settings, app_services) as application:
        yield application


@pytest.fixture
async def client(
    app: Any, app_services: Services, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app in-process, its database work inside the test's transaction."""
    async with in_process_client(app, app_services, sessionmaker) as c:
        yield c


class GraphQL:
    """Posts GraphQL documents the way a client would."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        all_headers = {"Accept": "application/graphql-response+json"}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=all_headers
        )
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body


@pytest.fixture
def gql(client: httpx.AsyncClient, settings: Settings) -> GraphQL:
    return GraphQL(client, settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.url = url
        self.process = process
        self.env = env

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


def herald_process_env(**overrides: str) -> dict[str, str]:
    """The environment of a ``herald`` process the tests start: the tests' database, broker
    and Redis, and the suite's signing secret."""
    return {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_DATABASE_URL": TEST_DATABASE_URL,
        "HERALD_RABBITMQ_URL": TEST_RABBITMQ_URL,
        "HERALD_REDIS_URL": TEST_REDIS_URL,
        "HERALD_JWT_SECRET": "test-secret-for-the-suite-0123456789abcdef",
        **overrides,
    }


def start_herald(
    *args: str, env: dict[str, str], stderr: Any = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``herald *args`` as a child process, run from the repository with ``env``; its output
    discarded (``stderr`` unless told where)."""
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def start_live_server(
    env_overrides: dict[str, str] | None = None,
    *,
    log: Any = subprocess.PIPE,
    args: Sequence[str] = (),
) -> LiveServer:
    """A ``herald api`` process. Its stderr goes to a pipe read after it stops, unless ``log``
    (an open file) takes it: uvicorn logs each WebSocket connection, and a test opening
    thousands would fill the pipe and block the server."""
    port = free_port()
    env = herald_process_env(
        **{
            "HERALD_ALLOWED_ORIGINS": f'["http://127.0.0.1:{port}"]',
            "HERALD_LOG_LEVEL": "WARNING",
            **(env_overrides or {}),
        }
    )
    process = start_herald("api", "--port", str(port), *args, env=env, stderr=log)
    url = f"http://127.0.0.1:{port}"
    # Importing the app takes about 3 s on an idle machine of this kind and 15 s on a loaded
    # one; a minute is room for the slowest machine, and costs nothing when it starts sooner.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stderr.read().decode() if process.stderr else "see its log"
            raise RuntimeError(f"the API exited: {output[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return LiveServer(url, process, env)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the API did not start within 60 s")


def stop_live_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def live_server(engine: AsyncEngine) -> Iterator[LiveServer]:
    """A real ``herald api`` process on the migrated test database."""
    server = start_live_server({"HERALD_WS_CONNECTION_INIT_TIMEOUT_SECONDS": "1"})
    yield server
    stop_live_server(server)


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a fresh app built from ``settings``, with its lifespan running."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as c:
            yield c


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    """The one value ``sql`` (with ``:name`` ``params``) selects, on a connection of its own:
    what the processes under test committed."""
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def schema_differences(engine: AsyncEngine, tables: set[str]) -> list[Any]:
    """What Alembic's autogenerate finds different between the migrated database and the
    models, for ``tables`` only: empty when the migrations create the models' tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.db.models import Base

    def compare(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, reflected, other: (
                    getattr(obj if type_ == "table" else getattr(obj, "table", None), "name", None)
                    in tables
                ),
            },
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)
