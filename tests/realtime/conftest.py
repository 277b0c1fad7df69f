"""Fixtures shared by the realtime tests."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as redis_async


@pytest.fixture
async def redis() -> Any:
    client = redis_async.Redis.from_url("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


@pytest.fixture
def committed(app_services: Any) -> Any:
    """Sessions that commit for real: the API process must see what the test stores."""
    return app_services.sessionmaker
