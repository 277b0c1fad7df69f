"""Retention: forgetting a user on request, and removing what is older than the settings keep.

Forgetting (``forget_user``) deletes what belongs to the user alone (inbox, preferences, push
subscriptions, waiting digest items, dead letters, scheduled events for them alone, cached
profile and limit counters), takes them out of what they share (scheduled events and campaign
audiences for several users), and scrubs the delivery history: each delivery keeps its status,
channel, times, event type and template, for counts, under the user's one-way hash
(:func:`hash_user_id`) instead of their id. The audit log keeps its entries with the hash too.

Each domain deletes its own rows (``forget_user(session, user_id) -> int`` in its repository),
listed once in :data:`FORGETTERS`: a new table that names users adds one line there.

Concurrency: the database part is one transaction; the history store and Redis are scrubbed
in their own steps. A delivery in flight while a user is forgotten may still write its status
(or an inbox item) afterwards: forgetting again removes it (every step is idempotent), and the
auth service, which asked for the forgetting, no longer knows the user, so a later dispatch
finds no profile and skips them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.history.base import HistoryStore
from backend.db.repositories import audit, campaigns, dead_letters, digests, events, inbox, topics
from backend.db.repositories import preferences as preference_rows
from backend.db.repositories import recipients as recipient_rows
from backend.errors import ValidationError
from backend.services.limits import KEY_PREFIX as LIMIT_KEY_PREFIX
from backend.services.users import evict_cached_profiles

Forgetter = Callable[[AsyncSession, str], Awaitable[int]]

# What each domain forgets of a user, by the kind ``Forgotten.counts`` reports it under.
# Recipients, their addresses and topic memberships plug in here, one line each.
FORGETTERS: tuple[tuple[str, Forgetter], ...] = (
    ("inbox_items", inbox.forget_user),
    ("preferences", preference_rows.forget_user),
    ("digest_items", digests.forget_user),
    ("scheduled_events", events.forget_user),
    ("campaigns", campaigns.forget_user),
    ("dead_letters", dead_letters.forget_user),
    ("topic_memberships", topics.forget_user),
    # Addresses first, so the recipient's count is its profile row alone.
    ("addresses", recipient_rows.forget_addresses),
    ("recipients", recipient_rows.forget_user),
)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a user removed or scrubbed, per kind (see FORGETTERS), plus the
    history deliveries scrubbed, the audit entries rewritten and the Redis keys deleted."""

    hashed_id: str
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)


def hash_user_id(user_id: str, *, key: bytes) -> str:
    """The one-way hash a forgotten user's id becomes: HMAC-SHA256 under a secret key, so
    counts still group per user but nobody without the key can test a guessed id."""
    return "forgotten:" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()


def _check_user_id(user_id: str) -> str:
    if not user_id.strip() or len(user_id) > 200:
        raise ValidationError("A user id is 1-200 characters", field="userId")
    return user_id


def _glob_escaped(value: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in value)


async def forget_cached_keys(redis: Redis, user_id: str) -> int:
    """Delete the user's cached profile and delivery-limit counters; how many keys went."""
    keys = [
        key async for key in redis.scan_iter(match=f"{LIMIT_KEY_PREFIX}*:{_glob_escaped(user_id)}")
    ]
    limits = int(await redis.delete(*keys)) if keys else 0
    return limits + await evict_cached_profiles(redis, [user_id])


async def forget_user(
    session: AsyncSession,
    *,
    history: HistoryStore,
    redis: Redis,
    user_id: str,
    hash_key: bytes,
) -> Forgotten:
    """Forget ``user_id`` everywhere Herald keeps it (see the module docstring), in the
    caller's unit of work for PostgreSQL tables. Idempotent: a second call finds nothing."""
    _check_user_id(user_id)
    hashed_id = hash_user_id(user_id, key=hash_key)
    counts = {kind: await forget(session, user_id) for kind, forget in FORGETTERS}
    needle = orjson.dumps(user_id).decode()[1:-1]
    counts["audit_entries"] = await audit.scrub_user(session, user_id, hashed_id, needle=needle)
    counts["deliveries"] = await history.scrub_user(user_id, hashed_id)
    counts["cache_keys"] = await forget_cached_keys(redis, user_id)
    return Forgotten(hashed_id=hashed_id, counts=counts)


def cutoff(now: datetime, days: int) -> datetime | None:
    """The creation time before which rows go, or None when ``days`` is 0 (kept forever)."""
    return now - timedelta(days=days) if days else None


async def purge_history(history: HistoryStore, *, now: datetime, days: int, batch_size: int) -> int:
    """Delete the deliveries older than ``days`` (the store commits each batch); 0 when
    retention is off."""
    before = cutoff(now, days)
    return 0 if before is None else await history.purge_older_than(before, batch_size=batch_size)


async def purge_inbox_batch(
    session: AsyncSession, *, now: datetime, days: int, batch_size: int
) -> int:
    """Delete one batch of inbox items older than ``days``, for the caller to commit; call
    again while it returns ``batch_size``. 0 when retention is off."""
    before = cutoff(now, days)
    if before is None:
        return 0
    return await inbox.purge_older_than(session, before, batch_size=batch_size)
