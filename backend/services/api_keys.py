"""API keys: long-lived credentials that admins make for services.

A key reads ``hk_<id>_<secret>``: ``hk_<id>`` is its public ``prefix`` (shown in lists, and
the row it finds), the secret is 256 random bits. Only the SHA-256 of the whole key is stored;
the key is shown once, when it is made. A key grants roles (``service``) or narrower scopes
(``events:send``, ``templates:read``, ``event_types:read``), may expire, and is revoked by an
admin.

Each API process verifies keys through :class:`ApiKeyVerifier`: a cache by prefix, so a busy
service's requests do not each read PostgreSQL. A revocation is published on Redis
(``REVOKED_CHANNEL``) after its commit and every process drops the key from its cache at once;
a process that lost its subscription drops its whole cache when it gets it back, and no entry
is trusted longer than ``api_key_cache_seconds`` in any case. ``last_used_at`` is written at
most once per ``api_key_touch_seconds`` per key and process, not on every request.

A prefix PostgreSQL does not know is remembered as unknown for ``UNKNOWN_SECONDS`` (at most
``MAX_UNKNOWN`` of them): a service sending a wrong key in a loop costs one query every few
seconds, not one a request. A WebSocket signed in with a key is watched (:meth:`watch`) and
closed with 4403 when the key's revocation arrives, as a refused token's socket is; after a lost
subscription the watched keys are read again and the revoked ones' sockets closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal, Role, Scope
from backend.db.models import ApiKey
from backend.db.repositories.api_keys import ApiKeyRepository
from backend.errors import ConflictError, NotFoundError, UnauthenticatedError, ValidationError
from backend.services import tenants
from backend.services.expiring import SingleFlight
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_cursor,
    encode_time_cursor,
)

log = logging.getLogger(__name__)

KEY_PREFIX = "hk_"
REVOKED_CHANNEL = "herald:api-keys:revoked"
READ_SECONDS = 1.0  # the revocation listener's longest read, so that it stops soon when asked
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")
_KEY_RE = re.compile(r"^(hk_[A-Za-z0-9]{10})_([A-Za-z0-9_-]{43})$")
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# What a key may be given: the role services hold, or scopes narrower than it.
KEY_ROLES = frozenset({Role.SERVICE.value})
KEY_SCOPES = frozenset(s.value for s in Scope)
GRANTS = KEY_ROLES | KEY_SCOPES
_CURSOR = "api-key"
# A revoked key's socket is closed as a refused token's is: get a new credential, then reconnect.
CLOSE_REVOKED = 4403
UNKNOWN_SECONDS = 5.0
MAX_UNKNOWN = 10_000


@dataclass(frozen=True, slots=True)
class ApiKeyData:
    name: str
    grants: Sequence[str]
    expires_at: datetime | None = None
    # Binds the key to a tenant: its callers see and change only that tenant's data.
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key's row, and the key itself: the only time it is known."""

    row: ApiKey
    secret: str


def hash_key(key: str) -> str:
    """The stored form of a key. A plain SHA-256 is enough: the secret is 256 random bits, so
    there is nothing for a slow hash to protect against guessing."""
    return hashlib.sha256(key.encode()).hexdigest()


def _check(data: ApiKeyData, now: datetime) -> tuple[list[str], list[str]]:
    if not NAME_RE.match(data.name):
        raise ValidationError(
            "A key's name is 1-100 letters, digits, spaces, '_', '.', '-'; a letter or digit first",
            field="name",
        )
    grants = sorted(set(data.grants))
    if not grants:
        raise ValidationError("A key needs at least one role or scope", field="grants")
    unknown = [g for g in grants if g not in GRANTS]
    if unknown:
        allowed = ", ".join(sorted(GRANTS))
        raise ValidationError(
            f"Unknown grant {unknown[0]!r}; a key may hold: {allowed}", field="grants"
        )
    if data.expires_at is not None:
        if data.expires_at.tzinfo is None:
            raise ValidationError("expiresAt needs a time zone", field="expiresAt")
        if data.expires_at <= now:
            raise ValidationError("expiresAt must be in the future", field="expiresAt")
    return [g for g in grants if g in KEY_ROLES], [g for g in grants if g in KEY_SCOPES]


async def create_api_key(
    session: AsyncSession, *, actor: Principal, data: ApiKeyData
) -> CreatedApiKey:
    """Make a key for a service; the result holds the key, which is never shown again."""
    now = datetime.now(UTC)
    roles, scopes = _check(data, now)
    tenant_id = await tenants.tenant_for_write(session, actor=actor, requested=data.tenant_id)
    prefix = KEY_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = await ApiKeyRepository(session).add(
        ApiKey(
            name=data.name,
            prefix=prefix,
            secret_hash=hash_key(key),
            roles=roles,
            scopes=scopes,
            created_by=actor.user_id,
            created_at=now,
            expires_at=data.expires_at,
            tenant_id=tenant_id,
        )
    )
    return CreatedApiKey(row=row, secret=key)


async def list_api_keys(
    session: AsyncSession, *, include_revoked: bool, first: int, after: str | None
) -> Page[ApiKey]:
    """Keys, newest first; revoked ones only when asked."""
    limit = check_page_size(first)
    position = decode_time_cursor(_CURSOR, after)
    rows = await ApiKeyRepository(session).page(
        include_revoked=include_revoked, after=position, limit=limit + 1
    )
    items = [(encode_time_cursor(_CURSOR, r.created_at, r.id), r) for r in rows[:limit]]
    return Page(items=items, has_next_page=len(rows) > limit)


async def revoke_api_key(session: AsyncSession, *, actor: Principal, key_id: str) -> ApiKey:
    """Revoke a key in the caller's unit of work. Publish the revocation with
    :func:`announce_revoked` once it is committed."""
    try:
        ident = uuid.UUID(key_id)
    except ValueError as exc:
        raise ValidationError("Not an API key id", field="id") from exc
    row = await ApiKeyRepository(session).get(ident, lock=True)
    if row is None:
        raise NotFoundError("No API key has this id", field="id")
    if row.revoked_at is not None:
        raise ConflictError("The key is revoked already", field="id")
    row.revoked_at = datetime.now(UTC)
    row.revoked_by = actor.user_id
    await session.flush()
    return row


async def announce_revoked(redis: Redis, *, prefix: str) -> None:
    """Tell every API process to forget a revoked key. Were Redis unreachable, processes
    still stop trusting the key within ``api_key_cache_seconds``."""
    try:
        await redis.publish(REVOKED_CHANNEL, prefix)
    except (RedisError, OSError) as exc:
        log.warning("could not announce the revocation of %s: %s", prefix, exc)


@dataclass(slots=True)
class _Entry:
    row_id: uuid.UUID
    secret_hash: str
    principal: Principal
    revoked: bool
    loaded_at: float
    touched_at: float


class ApiKeyVerifier:
    """Verifies API keys for one API process (see the module docstring)."""

    MAX_ENTRIES = 10_000

    def __init__(
        self,
        sessions: Callable[[], AsyncSession],
        *,
        redis_url: str,
        cache_seconds: float,
        touch_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._redis_url = redis_url
        self._cache_seconds = cache_seconds
        self._touch_seconds = touch_seconds
        self._cache: dict[str, _Entry] = {}
        # Bumped by every invalidation: a lookup that started before one does not cache.
        self._generation = 0
        # One look-up of a key at a time: when its entry expires, the requests signed with it
        # meanwhile wait for that one query (each reading it took a connection apiece).
        self._flights: SingleFlight[str, _Entry | None] = SingleFlight()
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._subscribed = asyncio.Event()
        # Prefixes PostgreSQL did not know, with when it said so (oldest first).
        self._unknown: dict[str, float] = {}
        # Open WebSockets by the prefix of the key they signed in with.
        self._sockets: dict[str, weakref.WeakSet[Any]] = {}

    def watch(self, prefix: str, socket: Any) -> None:
        """Close ``socket`` (an ASGI WebSocket: ``await socket.close(code, reason)``) with 4403
        when the key with ``prefix`` is revoked. Held weakly: a closed socket just goes."""
        if len(self._sockets) >= self.MAX_ENTRIES:
            for gone in [p for p, sockets in self._sockets.items() if not sockets]:
                del self._sockets[gone]
        self._sockets.setdefault(prefix, weakref.WeakSet()).add(socket)

    async def _close_sockets(self, prefix: str) -> None:
        sockets = self._sockets.pop(prefix, None)
        for socket in list(sockets or ()):
            with contextlib.suppress(Exception):  # closed meanwhile
                await socket.close(code=CLOSE_REVOKED, reason="The API key has been revoked")

    async def _close_revoked_sockets(self) -> None:
        """After a lost subscription: the watched keys revoked meanwhile lose their sockets."""
        prefixes = [p for p, sockets in self._sockets.items() if sockets]
        if not prefixes:
            return
        try:
            async with self._sessions() as session:
                repository = ApiKeyRepository(session)
                revoked = []
                for prefix in prefixes:
                    row = await repository.by_prefix(prefix)
                    if row is None or row.revoked_at is not None:
                        revoked.append(prefix)
        except Exception as exc:
            log.warning("API key revocations: could not check the open sockets' keys: %s", exc)
            return
        for prefix in revoked:
            await self._close_sockets(prefix)

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="api-key-revocations")

    async def wait_subscribed(self) -> None:
        """Until this process hears revocations (tests wait for it)."""
        await self._subscribed.wait()

    async def close(self) -> None:
        # The listener reads with a short timeout and checks this flag between reads: redis-py's
        # pubsub read can sit out a cancellation (as the live hub found), so it is asked to
        # stop rather than cancelled, and cancelled only if it does not.
        self._closing = True
        task, self._listener = self._listener, None
        if task is None:
            return
        _, pending = await asyncio.wait([task], timeout=READ_SECONDS + 2)
        for late in pending:
            late.cancel()

    def forget(self, prefix: str | None = None) -> None:
        """Drop one key (or all keys) from the cache."""
        self._generation += 1
        self._flights.forget(prefix)  # a look-up in flight read the key as it was
        if prefix is None:
            self._cache.clear()
            self._unknown.clear()
        else:
            self._cache.pop(prefix, None)
            self._unknown.pop(prefix, None)

    async def _listen(self) -> None:
        while not self._closing:
            redis = Redis.from_url(self._redis_url, socket_connect_timeout=2)
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(REVOKED_CHANNEL)
                # Revocations may have been missed while unsubscribed.
                self.forget()
                self._subscribed.set()
                await self._close_revoked_sockets()
                while not self._closing:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=READ_SECONDS
                    )
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        prefix = data.decode() if isinstance(data, bytes) else str(data)
                        self.forget(prefix)
                        await self._close_sockets(prefix)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not self._closing:
                    log.warning("API key revocations: Redis subscription lost: %s", exc)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await redis.aclose()
            if not self._closing:
                await asyncio.sleep(0.5)

    async def verify(self, key: str) -> Principal:
        """The principal of a key, or UnauthenticatedError."""
        match = _KEY_RE.match(key)
        if match is None:
            raise UnauthenticatedError("The API key is malformed")
        prefix = match.group(1)
        now = time.monotonic()
        unknown_since = self._unknown.get(prefix)
        if unknown_since is not None:
            if now - unknown_since < UNKNOWN_SECONDS:
                raise UnauthenticatedError("The API key is not valid")
            del self._unknown[prefix]
        entry = self._cache.get(prefix)
        if entry is None or now - entry.loaded_at > self._cache_seconds:
            entry, _ = await self._flights.load(prefix, lambda: self._load(prefix, now))
        if entry is None or not hmac.compare_digest(entry.secret_hash, hash_key(key)):
            raise UnauthenticatedError("The API key is not valid")
        if entry.revoked:
            raise UnauthenticatedError("The API key has been revoked")
        expires_at = entry.principal.expires_at
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise UnauthenticatedError("The API key has expired")
        if now - entry.touched_at >= self._touch_seconds:
            entry.touched_at = now
            await self._touch(entry.row_id)
        return entry.principal

    async def _load(self, prefix: str, now: float) -> _Entry | None:
        generation = self._generation
        async with self._sessions() as session:
            row = await ApiKeyRepository(session).by_prefix(prefix)
        if row is None:
            if generation == self._generation:
                if len(self._unknown) >= MAX_UNKNOWN:
                    self._unknown.pop(next(iter(self._unknown)))
                self._unknown[prefix] = now
            return None
        previous = self._cache.get(prefix)
        entry = _Entry(
            row_id=row.id,
            secret_hash=row.secret_hash,
            principal=Principal(
                user_id=f"api-key:{row.prefix}",
                roles=frozenset(row.roles),
                scopes=frozenset(row.scopes),
                expires_at=row.expires_at,
                key_name=row.name,
                tenant_id=row.tenant_id,
            ),
            revoked=row.revoked_at is not None,
            loaded_at=now,
            touched_at=previous.touched_at if previous else -self._touch_seconds - 1.0,
        )
        if generation == self._generation:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[prefix] = entry
        return entry

    async def _touch(self, key_id: uuid.UUID) -> None:
        try:
            async with self._sessions() as session:
                await ApiKeyRepository(session).touch(key_id, datetime.now(UTC))
                await session.commit()
        except Exception as exc:  # a missed "last used" must not refuse the request
            log.warning("could not record the use of API key %s: %s", key_id, exc)
