"""Fixtures shared by the realtime tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def committed(app_services: Any) -> Any:
    """Sessions that commit for real: the API process must see what the test stores."""
    return app_services.sessionmaker
