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

from backend.config import Settings
from backend.schema.context import Services
from tests.conftest import (
    GraphQL,
    in_process_client,
    make_services,
    make_settings,
    savepoint_sessionmaker,
    started_app,
)

SECURITY_REDIS_URL = os.environ.get("HERALD_TEST_SECURITY_REDIS_URL", "redis://127.0.0.1:6379/13")


def security_settings(**overrides: Any) -> Settings:
    return make_settings(redis_url=SECURITY_REDIS_URL, **overrides)


@pytest.fixture(scope="session")
def sec_settings() -> Settings:
    return security_settings()


@pytest.fixture(scope="session")
async def sec_services(sec_settings: Settings, engine: AsyncEngine) -> Services:
    return make_services(sec_settings, engine)


@pytest.fixture(scope="session")
async def sec_app(sec_settings: Settings, sec_services: Services) -> AsyncIterator[Any]:
    async with started_app(sec_settings, sec_services) as application:
        yield application


@pytest.fixture
async def sec_client(
    sec_app: Any, sec_services: Services, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(
        sec_app, sec_services, sessionmaker, peer=("203.0.113.7", 4711)
    ) as c:
        yield c


@asynccontextmanager
async def rolled_back(services: Services, engine: AsyncEngine) -> AsyncIterator[None]:
    """Run the app's database work inside one transaction that is rolled back afterwards: one
    per fuzzing example, so an example never sees (or is broken by) another's writes."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        original = services.sessionmaker
        services.sessionmaker = savepoint_sessionmaker(conn)
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
