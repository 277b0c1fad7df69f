"""The auth-service client: profiles over real HTTP, cached in the real Redis.

The auth service is the development stand-in under uvicorn; failures come from a second real
server whose answers each test scripts (errors a set number of times, or slowness).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.config import Settings
from backend.errors import UnavailableError, UserDirectoryUnavailable
from backend.services.users import UserDirectory, UserProfile
from backend.standins.auth_service import BULK_PROFILES_PATH, create_auth_standin
from tests.conftest import TEST_REDIS_URL, free_port, make_settings
from tests.processes import ThreadedServer

REDIS_URL = TEST_REDIS_URL
USER_PATH = "/api/v1/auth/users/user-details/"
LIST_PATH = "/api/v1/auth/users"
BULK_PATH = "/api/v1/auth/users/bulk"
# Short backoff keeps the failure tests fast; the bounds below are computed from it.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 0.2
# An id that must be URL-quoted to reach the right user.
ODD_ID = "ana maria?+1"


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
    after ``delay`` seconds, then profiles. A request naming one of ``failing_ids`` answers 500
    whatever the rest says; ids starting with ``nobody`` are unknown users."""

    failures: int = 0
    status: int = 500
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    failing_ids: set[str] = field(default_factory=set)
    hits: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # The ids each request asked for, in order of arrival (one each for the profile endpoint).
    asked: list[list[str]] = field(default_factory=list)


class ScriptedServer:
    """A server answering profile requests as its current :class:`Script` says.

    Each request follows the script current when it arrived, so a request still sleeping from an
    earlier test cannot spend the failures a later test scripted.
    """

    def __init__(self) -> None:
        self.script = Script()

    def app(self) -> Starlette:
        async def answer(user_ids: list[str], bulk: bool) -> JSONResponse:
            script = self.script
            script.hits += 1
            script.asked.append(user_ids)
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
                if script.failing_ids.intersection(user_ids):
                    return JSONResponse({"detail": "scripted failure"}, status_code=500)
                found = [
                    {"id": user_id, "email": f"{user_id}@example.com", "login": user_id}
                    for user_id in user_ids
                    if not user_id.startswith("nobody")
                ]
                if bulk:
                    return JSONResponse({"items": found})
                if not found:
                    return JSONResponse({"detail": "user not found"}, status_code=404)
                return JSONResponse(found[0])
            finally:
                script.in_flight -= 1

        async def profile(request: Request) -> JSONResponse:
            return await answer([request.path_params["user_id"]], bulk=False)

        async def bulk(request: Request) -> JSONResponse:
            return await answer((await request.json())["ids"], bulk=True)

        return Starlette(
            routes=[
                Route(USER_PATH + "{user_id}", profile),
                Route(BULK_PATH, bulk, methods=["POST"]),
            ]
        )


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
    max_concurrency: int | None = None,
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


async def test_the_concurrency_bound_is_a_setting_shared_by_concurrent_lookups(
    scripted, http, redis, prefix
):
    url, script = scripted
    script.delay = 0.05
    directory = make_directory(url, http, redis, prefix, auth_concurrency=3)

    first, second = await asyncio.gather(
        directory.get_many([f"one-{n}" for n in range(12)]),
        directory.get_many([f"two-{n}" for n in range(12)]),
    )

    assert len(first) == len(second) == 12
    assert script.hits == 24
    # Two look-ups at once still keep to one bound: the auth service is promised 3, not 6.
    assert script.max_in_flight == 3


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
async def test_concurrent_lookups_ask_for_a_user_once(scripted, http, redis, prefix, bulk):
    url, script = scripted
    script.delay = 0.1
    settings: dict[str, Any] = {"auth_concurrency": 8}
    if bulk:
        settings.update(auth_bulk_profiles_path=BULK_PATH, auth_bulk_batch_size=4)
    directory = make_directory(url, http, redis, prefix, **settings)
    first = [f"both-{n}" for n in range(10)]
    second = [f"both-{n}" for n in range(5, 15)]

    one = asyncio.create_task(directory.get_many(first))
    while not script.asked:  # the first look-up's requests are on their way
        await asyncio.sleep(0.005)
    found_first, found_second = await asyncio.gather(one, directory.get_many(second))

    assert {u: p.id if p else None for u, p in found_first.items()} == {u: u for u in first}
    assert {u: p.id if p else None for u, p in found_second.items()} == {u: u for u in second}
    # Ids 5 to 9, named by both, were asked for by the first look-up only.
    asked = sorted(i for request in script.asked for i in request)
    assert asked == sorted({*first, *second})


@pytest.mark.parametrize("how", ["fails", "is cancelled"])
async def test_a_lookup_waiting_for_another_fetches_itself_when_that_one_ends_badly(
    scripted, http, redis, prefix, how
):
    url, script = scripted
    script.delay = 0.2
    # One try: the first request fails and gives up, the next one answers.
    script.failures = 1 if how == "fails" else 0
    directory = make_directory(url, http, redis, prefix, auth_retries=0)

    loader = asyncio.create_task(directory.get_many(["shared"]))
    while not script.asked:
        await asyncio.sleep(0.005)
    waiter = asyncio.create_task(directory.get_many(["shared"]))
    await asyncio.sleep(0.05)
    assert script.asked == [["shared"]]  # the waiter is waiting for the loader's answer
    if how == "is cancelled":
        loader.cancel()
    found = await waiter

    profile = found["shared"]
    assert profile is not None and profile.id == "shared"
    # The loader's request, then the waiter's own.
    assert script.asked == [["shared"], ["shared"]]
    if how == "fails":
        with pytest.raises(UserDirectoryUnavailable):
            await loader
    else:
        with pytest.raises(asyncio.CancelledError):
            await loader


async def test_get_many_in_bulk_batches_within_the_bound(scripted, http, redis, prefix):
    url, script = scripted
    script.delay = 0.05
    directory = make_directory(
        url,
        http,
        redis,
        prefix,
        auth_bulk_profiles_path=BULK_PATH,
        auth_bulk_batch_size=40,
        auth_concurrency=3,
    )
    ids = [f"bulk-{n}" for n in range(240)] + [f"nobody-{n}" for n in range(10)]

    found = await directory.get_many(ids)

    assert list(found) == ids
    assert all(found[i] is not None and found[i].login == i for i in ids[:240])
    assert all(found[i] is None for i in ids[240:])
    # 250 ids in 7 requests (six of 40, one of 10), never more than 3 at once, each id once.
    assert script.hits == 7
    assert sorted(len(asked) for asked in script.asked) == [10, 40, 40, 40, 40, 40, 40]
    assert sorted(i for asked in script.asked for i in asked) == sorted(ids)
    assert script.max_in_flight == 3
    # Profiles and unknown users are cached as the one-profile path caches them.
    cached = await redis.mget([prefix + i for i in ids])
    assert json.loads(cached[0])["login"] == "bulk-0"
    assert cached[-1] == b"null"
    assert 0 < await redis.ttl(prefix + "nobody-0") <= 60
    again = await directory.get_many(ids)
    assert again == found
    assert script.hits == 7


async def test_bulk_profiles_from_the_standin(standin, http, redis, prefix):
    url, counting = standin
    one_each = make_directory(url, http, redis, prefix + "one:")
    bulk = make_directory(
        url,
        http,
        redis,
        prefix + "bulk:",
        auth_bulk_profiles_path=BULK_PROFILES_PATH,
        auth_bulk_batch_size=10,
    )
    ids = [user["id"] for user in USERS] + ["nobody-1", "nobody-2"]
    before_bulk = counting.paths[BULK_PROFILES_PATH]
    before_one = counting.profile_requests()

    found = await bulk.get_many(ids)

    # 27 ids in three requests, none of them to the one-profile endpoint.
    assert counting.paths[BULK_PROFILES_PATH] - before_bulk == 3
    assert counting.profile_requests() == before_one
    # The same profiles, and the same unknown users, as one request each finds.
    assert found == await one_each.get_many(ids)
    assert found[ODD_ID] is not None
    assert found["nobody-1"] is None


async def test_bulk_ids_the_service_sends_back_unasked_are_not_kept(http, redis, prefix):
    async def bulk(request: Request) -> JSONResponse:
        asked = (await request.json())["ids"]
        extra = {"id": "someone-else", "email": "x@example.com"}
        return JSONResponse({"items": [{"id": i, "login": i} for i in asked] + [extra]})

    with ThreadedServer(Starlette(routes=[Route(BULK_PATH, bulk, methods=["POST"])])) as server:
        directory = make_directory(
            server.url, http, redis, prefix, auth_bulk_profiles_path=BULK_PATH
        )
        found = await directory.get_many(["a-1", "a-2"])

    assert list(found) == ["a-1", "a-2"]
    assert await redis.get(prefix + "someone-else") is None


@pytest.mark.parametrize("bulk", [False, True], ids=["one-each", "bulk"])
async def test_a_failure_in_one_batch_keeps_what_arrived_and_raises(
    scripted, http, redis, prefix, bulk
):
    url, script = scripted
    settings: dict[str, Any] = {"auth_retries": 1, "auth_concurrency": 4}
    if bulk:
        settings.update(auth_bulk_profiles_path=BULK_PATH, auth_bulk_batch_size=10)
    directory = make_directory(url, http, redis, prefix, **settings)
    ids = [f"part-{n:02d}" for n in range(40)]
    # The last batch (or, one request each, the last id) fails until the service recovers.
    failing = ids[30:] if bulk else ids[39:]
    script.failing_ids = {failing[0]}

    with pytest.raises(UserDirectoryUnavailable, match=r"after 2 tries: HTTP 500"):
        await directory.get_many(ids)

    cached = dict(zip(ids, await redis.mget([prefix + i for i in ids]), strict=True))
    assert all(cached[i] is None for i in failing)
    # What arrived before the failure is kept (with a bound of 4, at least the first 3 batches
    # or ids were answered while the failing one was still retrying)...
    kept = [i for i in ids if cached[i] is not None]
    assert len(kept) >= (30 if bulk else 3)
    # ...so once the service recovers, the retry asks for the rest alone.
    script.failing_ids = set()
    script.asked.clear()
    found = await directory.get_many(ids)
    assert all(found[i] is not None for i in ids)
    asked_again = sorted(i for asked in script.asked for i in asked)
    assert asked_again == sorted(set(ids) - set(kept))
    assert set(failing) <= set(asked_again)


async def test_a_bulk_answer_without_items_is_unavailable(scripted, http, redis, prefix):
    url, _ = scripted
    # The one-profile path given as the bulk path: a 404 (no POST route) is a misconfiguration.
    wrong = make_directory(
        url, http, redis, prefix, auth_bulk_profiles_path=USER_PATH + "x", auth_retries=0
    )
    with pytest.raises(UserDirectoryUnavailable, match="HTTP 405 for POST"):
        await wrong.get_many(["u-1", "u-2"])

    async def not_a_list(request: Request) -> JSONResponse:
        return JSONResponse({"users": []})

    with ThreadedServer(
        Starlette(routes=[Route(BULK_PATH, not_a_list, methods=["POST"])])
    ) as server:
        directory = make_directory(
            server.url, http, redis, prefix, auth_bulk_profiles_path=BULK_PATH
        )
        with pytest.raises(UserDirectoryUnavailable, match="HERALD_AUTH_BULK_PROFILES_PATH"):
            await directory.get_many(["u-1"])
    assert await redis.get(prefix + "u-1") is None


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
