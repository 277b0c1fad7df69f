"""The auth-service client: profiles over real HTTP, cached in the real Redis.

The auth service is the development stand-in under uvicorn; failures come from a second real
server whose answers each test scripts (errors a set number of times, or slowness).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.config import Settings
from backend.errors import UnavailableError, UserDirectoryUnavailable
from backend.services.users import UserDirectory, UserProfile
from backend.standins.auth_service import create_auth_standin
from tests.conftest import free_port, make_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
USER_PATH = "/api/v1/auth/users/user-details/"
LIST_PATH = "/api/v1/auth/users"
# Short backoff keeps the failure tests fast; the bounds below are computed from it.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 0.2
# An id that must be URL-quoted to reach the right user.
ODD_ID = "ana maria?+1"


class ThreadedServer:
    """An ASGI app under a real uvicorn server in a background thread, on a free port."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # force_exit: requests still sleeping in the slow server must not hold up the teardown.
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(10)
        self._socket.close()


class CountingApp:
    """Counts the requests reaching the wrapped app, per path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)

    def profile_requests(self) -> int:
        return sum(n for path, n in self.paths.items() if path.startswith(USER_PATH))


@dataclass
class Script:
    """What the scripted server does: ``failures`` answers of ``status`` (-1: forever), each
    after ``delay`` seconds, then profiles."""

    failures: int = 0
    status: int = 500
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


class ScriptedServer:
    """A server answering profile requests as its current :class:`Script` says.

    Each request follows the script current when it arrived, so a request still sleeping from an
    earlier test cannot spend the failures a later test scripted.
    """

    def __init__(self) -> None:
        self.script = Script()

    def app(self) -> Starlette:
        async def profile(request: Request) -> JSONResponse:
            script = self.script
            script.hits += 1
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
            try:
                if script.delay:
                    await asyncio.sleep(script.delay)
                if script.failures:
                    script.failures -= 1
                    return JSONResponse(
                        {"detail": "scripted failure"},
                        status_code=script.status,
                        headers=script.headers,
                    )
                user_id = request.path_params["user_id"]
                body = {"id": user_id, "email": f"{user_id}@example.com", "login": user_id}
                return JSONResponse(body)
            finally:
                script.in_flight -= 1

        return Starlette(routes=[Route(USER_PATH + "{user_id}", profile)])


def user_record(user_id: str, n: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "email": f"user{n}@example.com",
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "login": f"user{n}",
        "phone": f"+1202555{n:04d}",
        "locale": ["en", "pt-BR", "ru", "de"][n % 4],
        "timezone": "Europe/Berlin",
        "roles": ["user"],
    }


USERS = [user_record(f"user-{n:02d}", n) for n in range(1, 25)] + [user_record(ODD_ID, 25)]


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("standin") / "users.json"
    path.write_text(json.dumps(USERS))
    return path


@pytest.fixture(scope="module")
def standin(users_file: Path) -> Iterator[tuple[str, CountingApp]]:
    counting = CountingApp(create_auth_standin(users_file, make_settings()))
    with ThreadedServer(counting) as server:
        yield server.url, counting


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[tuple[str, ScriptedServer]]:
    scripted = ScriptedServer()
    with ThreadedServer(scripted.app()) as server:
        yield server.url, scripted


@pytest.fixture
def scripted(scripted_server: tuple[str, ScriptedServer]) -> tuple[str, Script]:
    """The scripted server's URL and a fresh script for this test."""
    url, server = scripted_server
    server.script = Script()
    return url, server.script


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own, its keys deleted afterwards (the Redis is shared)."""
    value = f"herald:test:{uuid.uuid4().hex}:user:"
    yield value
    keys = [key async for key in redis.scan_iter(match=value + "*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_directory(
    auth_url: str,
    http: httpx.AsyncClient,
    redis: Redis,
    prefix: str,
    *,
    max_concurrency: int = 20,
    **overrides: Any,
) -> UserDirectory:
    return UserDirectory(
        make_settings(auth_url=auth_url, **overrides),
        http,
        redis,
        max_concurrency=max_concurrency,
        key_prefix=prefix,
        backoff_base_seconds=BACKOFF_BASE,
        backoff_cap_seconds=BACKOFF_CAP,
    )


def worst_case_seconds(settings: Settings) -> float:
    """Every try taking the full timeout, plus the longest backoff between tries."""
    tries = settings.auth_retries + 1
    backoff = sum(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (n - 1)) for n in range(1, tries))
    return tries * settings.auth_timeout_seconds + backoff


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_get_returns_the_profile_and_caches_it(standin, http, redis, prefix):
    url, _ = standin
    directory = make_directory(url, http, redis, prefix, user_cache_ttl_seconds=300)

    profile = await directory.get("user-07")

    assert profile == UserProfile(
        id="user-07",
        email="user7@example.com",
        first_name="First7",
        last_name="Last7",
        login="user7",
        phone="+12025550007",
        locale="de",
        timezone="Europe/Berlin",
    )
    assert json.loads(await redis.get(prefix + "user-07")) == profile.to_json()
    assert 290 < await redis.ttl(prefix + "user-07") <= 300


async def test_an_id_is_url_quoted(standin, http, redis, prefix):
    url, _ = standin
    profile = await make_directory(url, http, redis, prefix).get(ODD_ID)
    assert profile is not None
    assert profile.id == ODD_ID


async def test_second_lookup_is_served_from_the_cache(standin, http, redis, prefix):
    url, counting = standin
    directory = make_directory(url, http, redis, prefix)
    before = counting.profile_requests()

    first = await directory.get("user-03")
    second = await directory.get("user-03")

    assert first == second is not None
    assert counting.profile_requests() - before == 1
    # Another process (same Redis, the auth service unreachable) is served from the cache too.
    elsewhere = make_directory(dead_url(), http, redis, prefix, auth_retries=0)
    assert await elsewhere.get("user-03") == first


async def test_unknown_user_is_none_and_remembered_briefly(standin, http, redis):
    url, counting = standin
    ghost = f"ghost-{uuid.uuid4().hex}"
    # The production key layout, with an id no other test can use.
    directory = UserDirectory(make_settings(auth_url=url), http, redis)
    before = counting.profile_requests()
    try:
        assert await directory.get(ghost) is None
        assert await directory.get(ghost) is None
        assert counting.profile_requests() - before == 1
        assert await redis.get(f"herald:user:{ghost}") == b"null"
        assert 0 < await redis.ttl(f"herald:user:{ghost}") <= 60
    finally:
        await redis.delete(f"herald:user:{ghost}")


async def test_get_many_mixes_cached_uncached_and_unknown(standin, http, redis, prefix):
    url, counting = standin
    directory = make_directory(url, http, redis, prefix)
    await directory.get("user-01")
    await directory.get("nobody-1")
    before = counting.profile_requests()

    found = await directory.get_many(
        ["user-01", "user-02", "nobody-1", "user-03", "nobody-2", "user-02"]
    )

    assert list(found) == ["user-01", "user-02", "nobody-1", "user-03", "nobody-2"]
    assert {k: v.login if v else None for k, v in found.items()} == {
        "user-01": "user1",
        "user-02": "user2",
        "nobody-1": None,
        "user-03": "user3",
        "nobody-2": None,
    }
    # Only the three not yet cached reached the auth service, each once.
    assert counting.profile_requests() - before == 3
    cached = await redis.mget([prefix + key for key in found])
    assert all(value is not None for value in cached)
    assert await directory.get_many([]) == {}


async def test_get_many_fetches_concurrently_within_the_bound(scripted, http, redis, prefix):
    url, script = scripted
    script.delay = 0.05
    directory = make_directory(url, http, redis, prefix, max_concurrency=4)

    found = await directory.get_many([f"bulk-{n}" for n in range(30)])

    assert len(found) == 30
    assert all(profile is not None for profile in found.values())
    assert script.hits == 30
    assert script.max_in_flight == 4


@pytest.mark.parametrize(("status", "headers"), [(500, {}), (503, {}), (429, {"Retry-After": "0"})])
async def test_transient_failures_are_retried_then_succeed(
    scripted, http, redis, prefix, status, headers
):
    url, script = scripted
    script.failures = 2
    script.status = status
    script.headers = headers
    directory = make_directory(url, http, redis, prefix, auth_retries=2)

    profile = await directory.get("flaky-1")

    assert profile is not None
    assert profile.id == "flaky-1"
    assert script.hits == 3


async def test_retries_exhausted_raise_unavailable(scripted, http, redis, prefix):
    url, script = scripted
    script.failures = -1
    directory = make_directory(url, http, redis, prefix, auth_retries=3)

    with pytest.raises(UserDirectoryUnavailable, match=r"after 4 tries: HTTP 500") as caught:
        await directory.get("down-1")

    assert script.hits == 4
    assert isinstance(caught.value, UnavailableError)
    assert caught.value.code == "UNAVAILABLE"
    # Nothing is cached for a user the service could not answer about.
    assert await redis.get(prefix + "down-1") is None


async def test_a_slow_service_times_out_within_a_bound(scripted, http, redis, prefix):
    url, script = scripted
    script.delay = 5.0
    directory = make_directory(url, http, redis, prefix, auth_timeout_seconds=0.3, auth_retries=2)
    settings = make_settings(auth_timeout_seconds=0.3, auth_retries=2)

    started = time.monotonic()
    with pytest.raises(UserDirectoryUnavailable, match="after 3 tries"):
        await directory.get("slow-1")
    elapsed = time.monotonic() - started

    assert script.hits == 3
    assert 3 * 0.3 <= elapsed < worst_case_seconds(settings) + 0.5


async def test_an_unreachable_service_raises_unavailable(http, redis, prefix):
    directory = make_directory(dead_url(), http, redis, prefix, auth_retries=1)
    with pytest.raises(UserDirectoryUnavailable, match="ConnectError"):
        await directory.get("anyone")


async def test_a_client_error_is_a_misconfiguration_not_an_unknown_user(
    scripted, http, redis, prefix
):
    url, script = scripted
    script.failures = -1
    script.status = 400
    directory = make_directory(url, http, redis, prefix, auth_retries=3)

    with pytest.raises(UserDirectoryUnavailable, match="misconfiguration"):
        await directory.get("someone")

    assert script.hits == 1


async def test_the_api_token_is_sent_and_a_wrong_one_is_reported(users_file, http, redis, prefix):
    standin_settings = make_settings(auth_api_token="standin-api-token")
    with ThreadedServer(create_auth_standin(users_file, standin_settings)) as server:
        good = make_directory(server.url, http, redis, prefix, auth_api_token="standin-api-token")
        assert (await good.get("user-05")) is not None

        bad = make_directory(server.url, http, redis, prefix + "bad:", auth_api_token="wrong")
        with pytest.raises(UserDirectoryUnavailable, match="HERALD_AUTH_API_TOKEN"):
            await bad.get("user-06")


async def test_redis_down_still_returns_profiles(standin, http, caplog):
    url, _ = standin
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    directory = make_directory(url, http, dead_redis, "herald:user:")
    try:
        with caplog.at_level(logging.WARNING, logger="backend.services.users"):
            profile = await directory.get("user-09")
            found = await directory.get_many(["user-10", "nobody-3"])
    finally:
        await dead_redis.aclose()

    assert profile is not None
    assert profile.login == "user9"
    assert found["user-10"] is not None
    assert found["nobody-3"] is None
    assert any("Redis is unavailable" in r.getMessage() for r in caplog.records)


async def test_iter_all_pages_through_every_user(standin, http, redis, prefix):
    url, counting = standin
    directory = make_directory(url, http, redis, prefix)
    before = counting.paths[LIST_PATH]

    pages = directory.iter_all(page_size=10)
    first = await anext(pages)
    # Pages are fetched as they are consumed, not all up front.
    assert counting.paths[LIST_PATH] - before == 1
    rest = [page async for page in pages]

    sizes = [len(page) for page in [first, *rest]]
    assert sizes == [10, 10, 5]
    ids = [profile.id for page in [first, *rest] for profile in page]
    assert ids == [user["id"] for user in USERS]
    assert counting.paths[LIST_PATH] - before == 3


async def test_iter_all_with_a_wrong_list_path_raises(standin, http, redis, prefix):
    url, _ = standin
    directory = make_directory(
        url, http, redis, prefix, auth_users_list_path="/api/v1/auth/no-such-list"
    )
    with pytest.raises(UserDirectoryUnavailable, match="HTTP 404"):
        async for _ in directory.iter_all():
            pass
