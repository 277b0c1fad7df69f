"""Fixtures for the hostile-input tests: an app on its own Redis database (rate-limit buckets
and anything fuzzing arms never meet other suites'), its database work inside the test's
rolled-back transaction, and a GraphQL client that records every status it sees."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.app import create_app
from backend.auth import TokenVerifier
from backend.config import Settings
from backend.db.session import create_sessionmaker
from backend.schema.context import Services
from tests.conftest import GraphQL, make_settings

SECURITY_REDIS_URL = os.environ.get("HERALD_TEST_SECURITY_REDIS_URL", "redis://127.0.0.1:6379/13")


def security_settings(**overrides: Any) -> Settings:
    return make_settings(redis_url=SECURITY_REDIS_URL, **overrides)


@pytest.fixture(scope="session")
def sec_settings() -> Settings:
    return security_settings()


@pytest.fixture(scope="session")
async def sec_services(sec_settings: Settings, engine: AsyncEngine) -> Services:
    return Services(
        settings=sec_settings,
        verifier=TokenVerifier(sec_settings),
        sessionmaker=create_sessionmaker(engine),
        engine=engine,
    )


@pytest.fixture(scope="session")
async def sec_app(sec_settings: Settings, sec_services: Services) -> AsyncIterator[Any]:
    application = create_app(sec_settings, services=sec_services)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def sec_client(
    sec_app: Any, sec_services: Services, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    original = sec_services.sessionmaker
    sec_services.sessionmaker = sessionmaker
    transport = httpx.ASGITransport(app=sec_app, client=("203.0.113.7", 4711))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as c:
            yield c
    finally:
        sec_services.sessionmaker = original


@asynccontextmanager
async def rolled_back(services: Services, engine: AsyncEngine) -> AsyncIterator[None]:
    """Run the app's database work inside one transaction that is rolled back afterwards: one
    per fuzzing example, so an example never sees (or is broken by) another's writes."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        original = services.sessionmaker
        services.sessionmaker = async_sessionmaker(
            bind=conn,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        try:
            yield
        finally:
            services.sessionmaker = original
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
async def fuzz_client(sec_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose database work is isolated per request by :func:`rolled_back`."""
    transport = httpx.ASGITransport(app=sec_app, client=("203.0.113.8", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as c:
        yield c


@pytest.fixture
def sgql(sec_client: httpx.AsyncClient, sec_settings: Settings) -> GraphQL:
    return GraphQL(sec_client, sec_settings)


@pytest.fixture
def unique_sub() -> str:
    """A caller id no other test uses, so rate-limit buckets start full."""
    return f"sec-{uuid.uuid4().hex[:12]}"
