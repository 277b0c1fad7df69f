"""What the recipients tests share: the auth-service stand-in serving a list of users."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.standins.auth_service import create_auth_standin
from tests.conftest import make_settings
from tests.processes import ThreadedServer
from tests.test_users import CountingApp


@contextmanager
def auth_standin(folder: Path, users: list[dict[str, Any]]) -> Iterator[tuple[str, CountingApp]]:
    """The stand-in under uvicorn serving ``users``: its URL and its request counts."""
    path = folder / "users.json"
    path.write_text(json.dumps(users))
    counting = CountingApp(create_auth_standin(path, make_settings()))
    with ThreadedServer(counting) as server:
        yield server.url, counting
