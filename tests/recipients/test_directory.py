"""Profile look-ups through recipients: PostgreSQL first, the auth service (the real stand-in
under uvicorn, its requests counted) only for recipients missing or stale, what it sends
stored back. The Redis cache is off here (TTL 0) so each look-up reaches PostgreSQL."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.channels.base import Recipient
from backend.db.models import RecipientRow
from backend.db.repositories.recipients import RecipientRepository
from backend.errors import UserDirectoryUnavailable
from backend.services.recipients import ProfileInput, RecipientStore, identify_recipient
from backend.services.users import UserDirectory
from tests.conftest import TEST_REDIS_URL, make_settings
from tests.recipients.conftest import auth_standin
from tests.test_users import CountingApp, user_record

USERS = [user_record(f"rcp-{n:02d}", n) for n in range(1, 13)]


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CountingApp]]:
    with auth_standin(tmp_path_factory.mktemp("recipients"), USERS) as served:
        yield served


@pytest.fixture
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, Redis]]:
    redis = Redis.from_url(TEST_REDIS_URL)
    async with httpx.AsyncClient() as http:
        yield http, redis
    await redis.aclose()


def directory(
    url: str,
    clients: tuple[httpx.AsyncClient, Redis],
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    max_age: int = 3600,
    **overrides: object,
) -> UserDirectory:
    http, redis = clients
    return UserDirectory(
        make_settings(auth_url=url, user_cache_ttl_seconds=0, auth_retries=0, **overrides),
        http,
        redis,
        backoff_base_seconds=0.01,
        store=RecipientStore(sessionmaker, max_age_seconds=max_age),
    )


async def test_first_use_fills_the_recipient_from_the_auth_service(
    standin, clients, sessionmaker, session
):
    url, counting = standin
    before = counting.profile_requests()
    profile = await directory(url, clients, sessionmaker).get("rcp-01")

    assert profile is not None and profile.email == "user1@example.com"
    assert counting.profile_requests() == before + 1
    row = await RecipientRepository(session).get("rcp-01")
    assert row is not None
    assert (row.email, row.first_name, row.phone, row.source) == (
        "user1@example.com",
        "First1",
        "+12025550001",
        "auth",
    )
    assert row.refreshed_at is not None


async def test_a_fresh_recipient_makes_no_request(standin, clients, sessionmaker):
    url, counting = standin
    users = directory(url, clients, sessionmaker)
    first = await users.get_many(["rcp-02", "rcp-03"])
    asked = counting.profile_requests()

    again = await directory(url, clients, sessionmaker).get_many(["rcp-02", "rcp-03"])

    assert counting.profile_requests() == asked
    assert again == first


async def test_a_stale_recipient_is_fetched_again_and_overwritten(
    standin, clients, sessionmaker, session
):
    url, counting = standin
    users = directory(url, clients, sessionmaker, max_age=60)
    await users.get("rcp-04")
    await session.execute(
        update(RecipientRow)
        .where(RecipientRow.user_id == "rcp-04")
        .values(email="old@example.com", refreshed_at=datetime.now(UTC) - timedelta(seconds=61))
    )
    await session.commit()
    asked = counting.profile_requests()

    profile = await users.get("rcp-04")

    assert counting.profile_requests() == asked + 1
    assert profile is not None and profile.email == "user4@example.com"
    session.expire_all()
    row = await RecipientRepository(session).get("rcp-04")
    assert row is not None and row.email == "user4@example.com"
    assert row.refreshed_at is not None
    assert row.refreshed_at > datetime.now(UTC) - timedelta(seconds=30)


async def test_only_the_missing_ids_of_a_batch_go_to_the_auth_service(
    standin, clients, sessionmaker, session
):
    """Of a batch, only the missing ids go to the auth service."""
    url, counting = standin
    await directory(url, clients, sessionmaker).get_many(["rcp-05", "rcp-06"])
    asked = counting.profile_requests()

    found = await directory(url, clients, sessionmaker).get_many(["rcp-05", "rcp-06", "rcp-07"])

    assert counting.profile_requests() == asked + 1
    assert {u: p.first_name if p else None for u, p in found.items()} == {
        "rcp-05": "First5",
        "rcp-06": "First6",
        "rcp-07": "First7",
    }


async def test_an_identified_user_the_auth_service_does_not_know_is_still_found(
    standin, clients, sessionmaker, session
):
    url, _ = standin
    user_id = f"external-{uuid.uuid4().hex[:8]}"
    await identify_recipient(
        session,
        user_id=user_id,
        profile=ProfileInput(email="ext@example.com", first_name="Ext"),
    )
    await session.execute(
        update(RecipientRow)
        .where(RecipientRow.user_id == user_id)
        .values(refreshed_at=datetime.now(UTC) - timedelta(days=2))
    )
    await session.commit()

    profile = await directory(url, clients, sessionmaker).get(user_id)
    unknown = await directory(url, clients, sessionmaker).get(f"nobody-{uuid.uuid4().hex}")

    assert profile is not None and profile.email == "ext@example.com"
    assert unknown is None


async def test_the_auth_service_down_still_fails_missing_users_but_not_stored_ones(
    standin, clients, sessionmaker
):
    url, _ = standin
    await directory(url, clients, sessionmaker).get("rcp-08")
    down = "http://127.0.0.1:9"  # nothing listens on the discard port

    stored = await directory(down, clients, sessionmaker).get("rcp-08")
    with pytest.raises(UserDirectoryUnavailable):
        await directory(down, clients, sessionmaker).get("rcp-09")

    assert stored is not None and stored.email == "user8@example.com"


async def test_a_profile_listed_again_unchanged_and_recent_is_not_rewritten(sessionmaker, session):
    """A campaign lists every user: a stored profile that is the same and refreshed within
    half the maximum age keeps its row version (no write, no index entries); one that changed,
    or is getting old, is written."""
    store = RecipientStore(sessionmaker, max_age_seconds=3600)
    profile = Recipient(id="rcp-11", email="user11@example.com", first_name="First11")

    async def stored() -> tuple[str, datetime, str | None]:
        row = (
            await session.execute(
                text("SELECT ctid::text, refreshed_at, email FROM recipients WHERE user_id = :u"),
                {"u": "rcp-11"},
            )
        ).one()
        return row[0], row[1], row[2]

    await store.write({"rcp-11": profile})
    first = await stored()

    await store.write({"rcp-11": profile})
    assert await stored() == first  # the same row version: nothing was written

    await store.write({"rcp-11": dataclasses.replace(profile, email="new11@example.com")})
    changed = await stored()
    assert changed[2] == "new11@example.com"
    assert changed[0] != first[0] and changed[1] > first[1]

    # Refreshed more than half the maximum age ago: written again, and fresh again.
    await session.execute(
        update(RecipientRow)
        .where(RecipientRow.user_id == "rcp-11")
        .values(refreshed_at=datetime.now(UTC) - timedelta(minutes=31))
    )
    await session.commit()
    await store.write({"rcp-11": dataclasses.replace(profile, email="new11@example.com")})
    assert (await stored())[1] > datetime.now(UTC) - timedelta(seconds=30)
