"""What the client tests share: a live ``herald api`` with a small event rate limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import LiveServer, make_settings, start_live_server, stop_live_server
from tests.factories import token_for


@pytest.fixture(scope="package")
def api(engine: AsyncEngine) -> Iterator[LiveServer]:
    # Two events at once, then one every half second: a burst of three meets RATE_LIMITED.
    server = start_live_server(
        {"HERALD_EVENT_RATE_PER_SECOND": "2", "HERALD_EVENT_RATE_BURST": "2"}
    )
    try:
        yield server
    finally:
        stop_live_server(server)


def service_token() -> str:
    """A service and manager token of its own caller (its own rate-limit bucket)."""
    return token_for(make_settings(), "service", "manager", sub=f"svc-{uuid.uuid4().hex[:8]}")
