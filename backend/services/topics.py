"""Topics: named groups of users that events and campaigns target (``audience: {topics}``).

Managers create topics and add or remove members; a topic marked ``self_service`` lets users
join and leave it themselves. Sending to topics fans out over the union of their members in
keyset pages (by user id), so a user in two targeted topics gets one delivery. Users may opt
out of a topic in their preferences: deliveries that reached them through topics they all
opted out of are skipped (a delivery to their own user id is not).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.db.models import Topic, TopicMember
from backend.db.repositories.topics import TopicMemberRepository, TopicRepository
from backend.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_MEMBERS_PER_CALL = 1000
MAX_TARGETED_TOPICS = 20
_TOPICS_CURSOR = "topic"
_MEMBERS_CURSOR = "topic-member"


@dataclass(frozen=True, slots=True)
class TopicData:
    key: str
    name: str
    description: str = ""
    self_service: bool = False


@dataclass(frozen=True, slots=True)
class TopicPatch:
    """Changes to a topic: None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    self_service: bool | None = None


@dataclass(frozen=True, slots=True)
class TopicChoice:
    """A self-service topic as a user sees it: whether they are in it."""

    topic: Topic
    subscribed: bool


def check_key(key: str, *, field: str = "key") -> str:
    if not KEY_RE.match(key):
        raise ValidationError(
            "A topic key is 1-100 lowercase letters, digits, '_', '.', '-'", field=field
        )
    return key


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("A topic name is 1-200 characters", field="name")
    return name


def _check_description(description: str) -> str:
    if len(description) > 2000:
        raise ValidationError("A description is at most 2000 characters", field="description")
    return description


def _check_user_ids(user_ids: Sequence[str]) -> list[str]:
    ids = list(dict.fromkeys(u.strip() for u in user_ids))
    if not ids or any(not u or len(u) > 200 for u in ids):
        raise ValidationError("Give 1 or more user ids of 1-200 characters", field="userIds")
    if len(ids) > MAX_MEMBERS_PER_CALL:
        raise ValidationError(f"At most {MAX_MEMBERS_PER_CALL} user ids per call", field="userIds")
    return ids


async def _get(session: AsyncSession, key: str, *, lock: bool = False) -> Topic:
    topic = await TopicRepository(session).get(key, lock=lock) if KEY_RE.match(key) else None
    if topic is None:
        raise NotFoundError(f"No topic with key '{key}'", field="key")
    return topic


async def check_topics(session: AsyncSession, keys: Sequence[str], *, field: str) -> list[str]:
    """Targeted topic keys, de-duplicated; each must exist (a typed error at send time)."""
    unique = list(dict.fromkeys(k.strip() for k in keys))
    if len(unique) > MAX_TARGETED_TOPICS:
        raise ValidationError(f"At most {MAX_TARGETED_TOPICS} topics", field=field)
    for key in unique:
        check_key(key, field=field)
    missing = sorted(set(unique) - await TopicRepository(session).existing_keys(unique))
    if missing:
        raise NotFoundError(f"No topic with key: {', '.join(missing)}", field=field)
    return unique


async def create_topic(session: AsyncSession, *, actor: Principal, data: TopicData) -> Topic:
    """A new topic, empty; the key is its name in targeting and cannot change."""
    key = check_key(data.key)
    repo = TopicRepository(session)
    if await repo.get(key) is not None:
        raise ConflictError(f"A topic with key '{key}' exists", field="key")
    now = datetime.now(UTC)
    return await repo.add(
        Topic(
            key=key,
            name=_check_name(data.name),
            description=_check_description(data.description),
            self_service=data.self_service,
            created_at=now,
            updated_at=now,
        )
    )


async def update_topic(
    session: AsyncSession, *, actor: Principal, key: str, patch: TopicPatch
) -> Topic:
    topic = await _get(session, key, lock=True)
    if patch.name is not None:
        topic.name = _check_name(patch.name)
    if patch.description is not None:
        topic.description = _check_description(patch.description)
    if patch.self_service is not None:
        topic.self_service = patch.self_service
    topic.updated_at = datetime.now(UTC)
    await session.flush()
    return topic


async def delete_topic(session: AsyncSession, *, actor: Principal, key: str) -> str:
    """Delete a topic with its memberships. Campaigns that target it send to no one through
    it from then on."""
    topic = await _get(session, key, lock=True)
    await TopicRepository(session).delete(topic)
    return key


async def add_to_topic(
    session: AsyncSession, *, actor: Principal, key: str, user_ids: Sequence[str]
) -> int:
    """Add up to 1000 users; those already in it are left as they are. How many were added."""
    ids = _check_user_ids(user_ids)
    await _get(session, key)
    return await TopicMemberRepository(session).add(key, ids, datetime.now(UTC))


async def remove_from_topic(
    session: AsyncSession, *, actor: Principal, key: str, user_ids: Sequence[str]
) -> int:
    """Remove up to 1000 users; those not in it are ignored. How many were removed."""
    ids = _check_user_ids(user_ids)
    await _get(session, key)
    return await TopicMemberRepository(session).remove(key, ids)


async def _self_service(session: AsyncSession, key: str) -> Topic:
    topic = await _get(session, key)
    if not topic.self_service:
        raise ForbiddenError(f"Topic '{key}' is not open to self-service", field="key")
    return topic


async def subscribe_topic(session: AsyncSession, *, actor: Principal, key: str) -> TopicChoice:
    """The caller joins a self-service topic (joining twice changes nothing)."""
    topic = await _self_service(session, key)
    await TopicMemberRepository(session).add(key, [actor.user_id], datetime.now(UTC))
    return TopicChoice(topic, True)


async def unsubscribe_topic(session: AsyncSession, *, actor: Principal, key: str) -> TopicChoice:
    """The caller leaves a self-service topic (leaving twice changes nothing)."""
    topic = await _self_service(session, key)
    await TopicMemberRepository(session).remove(key, [actor.user_id])
    return TopicChoice(topic, False)


async def get_topic(session: AsyncSession, *, key: str) -> Topic | None:
    return await TopicRepository(session).get(key) if KEY_RE.match(key) else None


async def list_topics(
    session: AsyncSession, *, search: str | None, first: int, after: str | None
) -> Page[Topic]:
    """Topics by key, optionally those whose key or name contains ``search``."""
    check_page_size(first)
    rows = await TopicRepository(session).page(
        search=search.strip() if search else None,
        after=decode_cursor(_TOPICS_CURSOR, after),
        limit=first + 1,
    )
    return Page(
        [(encode_cursor(_TOPICS_CURSOR, t.key), t) for t in rows[:first]], len(rows) > first
    )


async def member_count(session: AsyncSession, *, key: str) -> int:
    return await TopicMemberRepository(session).count(key)


async def list_members(
    session: AsyncSession, *, key: str, first: int, after: str | None
) -> Page[TopicMember]:
    """A topic's members by user id."""
    check_page_size(first)
    rows = await TopicMemberRepository(session).page(
        key, after=decode_cursor(_MEMBERS_CURSOR, after), limit=first + 1
    )
    return Page(
        [(encode_cursor(_MEMBERS_CURSOR, m.user_id), m) for m in rows[:first]],
        len(rows) > first,
    )


async def my_topics(session: AsyncSession, *, actor: Principal) -> list[TopicChoice]:
    """The self-service topics, and whether the caller is in each."""
    topics = await TopicRepository(session).self_service()
    mine = await TopicMemberRepository(session).memberships(actor.user_id, [t.key for t in topics])
    return [TopicChoice(t, t.key in mine) for t in topics]


async def members_page(
    session: AsyncSession, *, topic_keys: Sequence[str], after: str | None, size: int
) -> list[str]:
    """One keyset page of the distinct members of the topics, after user id ``after``."""
    return await TopicMemberRepository(session).union_page(topic_keys, after=after, limit=size)


async def topic_opt_outs(
    session: AsyncSession,
    *,
    topic_keys: Sequence[str],
    disabled: dict[str, Sequence[str]],
) -> dict[str, str]:
    """Of users reached through ``topic_keys``, those who opted out of every targeted topic
    they are in, with the reason recorded on their skipped deliveries. ``disabled`` is each
    user's opted-out topics (users with none need not be given)."""
    candidates = [u for u, keys in disabled.items() if set(keys) & set(topic_keys)]
    if not candidates:
        return {}
    memberships = await TopicMemberRepository(session).members_of(candidates, topic_keys)
    reasons: dict[str, str] = {}
    for user_id in candidates:
        through = memberships.get(user_id, set())
        if through and through <= set(disabled[user_id]):
            names = ", ".join(f"'{k}'" for k in sorted(through))
            reasons[user_id] = f"the user opted out of the topic {names}"
    return reasons


async def memberships_of(session: AsyncSession, *, user_id: str) -> list[Topic]:
    """The topics the user is in, by key."""
    return await TopicRepository(session).of_user(user_id)


async def topics_of_user(
    session: AsyncSession, *, user_id: str, also: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(key, name) of the topics the user is in, and of those in ``also`` that exist (the
    ones they opted out of), by key: what their preference page offers."""
    rows = await TopicRepository(session).of_user(user_id, also=also)
    return [(t.key, t.name) for t in rows]
