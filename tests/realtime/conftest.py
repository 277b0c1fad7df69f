"""Fixtures shared by the realtime tests."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as redis_async

from tests.conftest import TEST_REDIS_URL


@pytest.fixture
async def redis() -> Any:
    client = redis_async.Redis.from_url(TEST_REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def committed(app_services: Any) -> Any:
    """Sessions that commit for real: the API process must see what the test stores."""
    return app_services.sessionmaker
