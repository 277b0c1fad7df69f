"""Recipients: what Herald keeps of each user, and the addresses Herald owns for them.

A recipient row (PostgreSQL) holds the profile fields Herald uses. The auth service stays the
source of truth for what it holds: a recipient is filled from it on first use and fetched again
once older than ``HERALD_RECIPIENT_MAX_AGE_SECONDS`` (:class:`RecipientStore`, the layer the
:class:`~backend.services.users.UserDirectory` reads between its Redis cache and the auth
service), or imported in bulk by a sync (``herald recipients sync``, the ``syncRecipients``
mutation). Services may also identify recipients the auth service does not know, and clients
register their own addresses: Web Push subscriptions, mobile device tokens, chat ids.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal, Role
from backend.broker import Broker
from backend.config import Settings
from backend.db.models import RecipientAddress, RecipientRow, RecipientSync
from backend.db.repositories.recipients import (
    PROFILE_FIELDS,
    RecipientAddressRepository,
    RecipientRepository,
    RecipientSyncRepository,
)
from backend.db.session import create_engine, create_sessionmaker
from backend.errors import ForbiddenError, NotFoundError, UnavailableError, ValidationError
from backend.services import task_messages
from backend.services.calendars import check_zone
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor
from backend.services.users import UserDirectory, UserProfile

log = logging.getLogger(__name__)

READERS = frozenset({Role.ADMIN, Role.MANAGER})
WRITERS = frozenset({Role.ADMIN, Role.SERVICE})
# Rows per statement when profiles are written back: well inside PostgreSQL's parameter limit.
WRITE_CHUNK = 1000
_CURSOR = "recipient"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class AddressKind(Enum):
    WEB_PUSH = "WEB_PUSH"
    MOBILE_PUSH = "MOBILE_PUSH"
    CHAT = "CHAT"
    WEBHOOK = "WEBHOOK"


class SyncStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


MOBILE_PLATFORMS = ("ios", "android")
CHAT_PROVIDERS = ("slack", "telegram", "teams", "discord", "mattermost")


# --- the look-up layer between the Redis cache and the auth service ---------------------------


def profile_of(row: Any) -> UserProfile:
    """The profile a stored recipient row holds, as deliveries and dry runs read it."""
    return UserProfile(
        id=row.user_id,
        email=row.email,
        first_name=row.first_name or "",
        last_name=row.last_name or "",
        login=row.login or "",
        phone=row.phone,
        locale=row.locale,
        timezone=row.timezone,
    )


class RecipientStore:
    """Recipients in PostgreSQL as the profile source between the Redis cache and the auth
    service: one query per batch of ids; what is missing or stale goes to the auth service and
    comes back here.

    Writing back is a cache fill that belongs to no caller's transaction (look-ups run outside
    one), so it commits in its own session. A database failure never fails a look-up: the
    auth service is asked instead, and a warning logged.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, max_age_seconds: int
    ) -> None:
        self._sessionmaker = sessionmaker
        self._max_age = timedelta(seconds=max_age_seconds)

    async def read(
        self, user_ids: Sequence[str]
    ) -> tuple[dict[str, UserProfile], dict[str, UserProfile]]:
        """(fresh profiles, identified profiles to fall back on when the auth service does not
        know the user); ids in neither are missing or stale."""
        try:
            async with self._sessionmaker() as session:
                rows = await RecipientRepository(session).profiles(user_ids)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("recipients unreadable (%s: %s); asking the auth service", type(exc), exc)
            return {}, {}
        oldest = datetime.now(UTC) - self._max_age
        fresh: dict[str, UserProfile] = {}
        identified: dict[str, UserProfile] = {}
        for row in rows:
            if row.refreshed_at is not None and row.refreshed_at > oldest:
                fresh[row.user_id] = profile_of(row)
            elif row.source == "identify":
                identified[row.user_id] = profile_of(row)
        return fresh, identified

    async def write(self, profiles: Mapping[str, UserProfile | None]) -> None:
        """Store the profiles the auth service sent (unknown users are not stored)."""
        known = [_row_of(p) for p in profiles.values() if p is not None]
        if not known:
            return
        now = datetime.now(UTC)
        try:
            async with self._sessionmaker() as session:
                repository = RecipientRepository(session)
                for start in range(0, len(known), WRITE_CHUNK):
                    await repository.store_profiles(
                        known[start : start + WRITE_CHUNK], source="auth", refreshed_at=now
                    )
                await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("recipients not stored (%s: %s)", type(exc).__name__, exc)


def _row_of(profile: UserProfile) -> dict[str, Any]:
    return {"user_id": profile.id, **{name: getattr(profile, name) for name in PROFILE_FIELDS}}


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientView:
    """A recipient and all its addresses."""

    row: RecipientRow
    addresses: list[RecipientAddress] = field(default_factory=list)


async def get_recipient(
    session: AsyncSession, *, actor: Principal, user_id: str
) -> RecipientView | None:
    """One recipient: admins and managers read anyone's, a user their own."""
    if user_id != actor.user_id and actor.tenant_id is not None:
        # User ids are the install's, not a tenant's: a bound caller keeps to its own.
        raise ForbiddenError("A caller bound to a tenant reads only its own recipient")
    if user_id != actor.user_id and not actor.has_any(READERS):
        raise ForbiddenError("Only admins and managers read other users' recipients")
    row = await RecipientRepository(session).get(user_id)
    if row is None:
        return None
    addresses = await RecipientAddressRepository(session).of_users([user_id])
    return RecipientView(row, addresses)


async def list_recipients(
    session: AsyncSession, *, search: str | None, first: int, after: str | None
) -> Page[RecipientView]:
    """Recipients by user id; ``search`` matches the id, the email or the name."""
    limit = check_page_size(first)
    if search is not None and len(search) > 200:
        raise ValidationError("The search is too long", field="search")
    rows = await RecipientRepository(session).page(
        search=(search or "").strip() or None,
        after_user_id=decode_cursor(_CURSOR, after),
        limit=limit + 1,
    )
    shown = rows[:limit]
    by_user: dict[str, list[RecipientAddress]] = {r.user_id: [] for r in shown}
    for address in await RecipientAddressRepository(session).of_users(list(by_user)):
        by_user[address.user_id].append(address)
    return Page(
        items=[
            (encode_cursor(_CURSOR, r.user_id), RecipientView(r, by_user[r.user_id])) for r in shown
        ],
        has_next_page=len(rows) > limit,
    )


# --- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressInput:
    """An address to register: its kind, the provider or platform, and what sending needs."""

    kind: AddressKind
    key: str
    value: dict[str, Any]
    provider: str | None = None


def web_push_address(
    *, endpoint: str, p256dh: str, auth: str, allow_http: bool, field_prefix: str = ""
) -> AddressInput:
    """A browser's Web Push subscription, checked. ``allow_http`` admits plain-http endpoints,
    for local push-service stand-ins outside production; real push services are https."""
    if not endpoint.startswith("https://") and not (allow_http and endpoint.startswith("http://")):
        raise ValidationError("A push endpoint is an https URL", field=f"{field_prefix}endpoint")
    if len(endpoint) > 2000:
        raise ValidationError("The endpoint is too long", field=f"{field_prefix}endpoint")
    for name, value in (("p256dh", p256dh), ("auth", auth)):
        if not _B64URL.match(value) or len(value) > 200:
            raise ValidationError(
                f"keys.{name} must be base64url", field=f"{field_prefix}keys.{name}"
            )
    return AddressInput(
        AddressKind.WEB_PUSH, endpoint, {"endpoint": endpoint, "p256dh": p256dh, "auth": auth}
    )


def mobile_push_address(*, platform: str, token: str) -> AddressInput:
    token = _checked_key(
        token, platform, MOBILE_PLATFORMS, what="A device token", limit=4096, at="mobilePush"
    )
    return AddressInput(AddressKind.MOBILE_PUSH, token, {"token": token}, provider=platform)


def chat_address(*, provider: str, chat_id: str) -> AddressInput:
    chat_id = _checked_key(
        chat_id, provider, CHAT_PROVIDERS, what="A chat id", limit=200, at="chat"
    )
    return AddressInput(AddressKind.CHAT, chat_id, {"chat_id": chat_id}, provider=provider)


def webhook_address(*, url: str, allow_http: bool) -> AddressInput:
    """A URL the webhook channel POSTs the user's messages to. Whether its host may be reached
    (no private or loopback address in production) is checked at every send."""
    url = url.strip()
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname or len(url) > 2000:
        raise ValidationError(
            f"A webhook URL is an absolute {' or '.join(schemes)} URL", field="webhook.url"
        )
    return AddressInput(AddressKind.WEBHOOK, url, {"url": url})


def _checked_key(
    key: str, provider: str, providers: Sequence[str], *, what: str, limit: int, at: str
) -> str:
    """``key`` stripped, once it and its provider (or platform) are acceptable."""
    if provider not in providers:
        name = "platform" if at == "mobilePush" else "provider"
        raise ValidationError(f"{name} is one of {', '.join(providers)}", field=f"{at}.{name}")
    key = key.strip()
    if not key or len(key) > limit:
        field = "token" if at == "mobilePush" else "chatId"
        raise ValidationError(f"{what} is 1 to {limit} characters", field=f"{at}.{field}")
    return key


@dataclass(frozen=True, slots=True)
class ProfileInput:
    """identifyRecipient's profile fields: only those given (not ``None``) change."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    custom: dict[str, Any] | None = None


def _checked_fields(profile: ProfileInput) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if profile.email is not None:
        if len(profile.email) > 320 or not _EMAIL.match(profile.email):
            raise ValidationError("Not an email address", field="email")
        fields["email"] = profile.email
    for name, label in (("first_name", "firstName"), ("last_name", "lastName")):
        value = getattr(profile, name)
        if value is not None:
            if len(value) > 200:
                raise ValidationError("A name is at most 200 characters", field=label)
            fields[name] = value
    if profile.phone is not None:
        if not _PHONE.match(profile.phone):
            raise ValidationError("A phone number is in E.164 form (+4915112345678)", field="phone")
        fields["phone"] = profile.phone
    if profile.locale is not None:
        if len(profile.locale) > 35 or not _LOCALE.match(profile.locale):
            raise ValidationError("A locale is a language tag such as de-DE", field="locale")
        fields["locale"] = profile.locale
    if profile.timezone is not None:
        check_zone(profile.timezone, field="timezone")
        fields["timezone"] = profile.timezone
    if profile.custom is not None and len(str(profile.custom)) > 16_000:
        raise ValidationError("Custom data is at most 16 KB", field="custom")
    return fields


def _checked_user_id(user_id: str) -> str:
    user_id = user_id.strip()
    if not user_id or len(user_id) > 200:
        raise ValidationError("A user id is 1 to 200 characters", field="userId")
    return user_id


async def identify_recipient(
    session: AsyncSession,
    *,
    user_id: str,
    profile: ProfileInput,
    addresses: Sequence[AddressInput] = (),
) -> RecipientView:
    """Create or update a recipient from a service: the given fields change, others stay.

    A recipient the auth service does not know keeps what was identified; one it knows is
    overwritten by the auth service's profile at its next refresh."""
    user_id = _checked_user_id(user_id)
    fields = _checked_fields(profile)
    row = await RecipientRepository(session).identify(
        user_id, fields=fields, custom=profile.custom, refreshed_at=datetime.now(UTC)
    )
    repository = RecipientAddressRepository(session)
    for address in addresses:
        await _register(repository, user_id, address)
    return RecipientView(row, await repository.of_users([user_id]))


async def register_address(
    session: AsyncSession, *, actor: Principal, address: AddressInput
) -> RecipientAddress:
    """Register an address for the caller (the token's user); registering one that another
    user had moves it to the caller."""
    return await _register(RecipientAddressRepository(session), actor.user_id, address)


async def _register(
    repository: RecipientAddressRepository, user_id: str, address: AddressInput
) -> RecipientAddress:
    await RecipientRepository(repository.session).ensure(user_id)
    return await repository.register(
        user_id=user_id,
        kind=address.kind.value,
        provider=address.provider,
        key=address.key,
        value=address.value,
    )


async def remove_address(session: AsyncSession, *, actor: Principal, address_id: str) -> None:
    """Remove one of the caller's addresses."""
    try:
        ident = uuid.UUID(address_id)
    except ValueError as exc:
        raise ValidationError("Not an address id", field="id") from exc
    if not await RecipientAddressRepository(session).remove(ident, user_id=actor.user_id):
        raise NotFoundError("You have no such address", field="id")


async def disable_web_push(
    session: AsyncSession, *, reasons: Mapping[str, str], at: datetime | None = None
) -> int:
    """Disable the Web Push addresses a push service reported gone, each with its reason;
    later sends skip them."""
    return await disable_addresses(session, kind=AddressKind.WEB_PUSH, reasons=reasons, at=at)


async def disable_addresses(
    session: AsyncSession,
    *,
    kind: AddressKind,
    reasons: Mapping[str, str],
    at: datetime | None = None,
    provider: str | None = None,
) -> int:
    """Disable the addresses of ``kind`` (by key) a provider reported gone, each with its
    reason; later sends skip them. ``provider``: only the addresses of that service (a chat
    id means something only to its own chat service)."""
    at = at or datetime.now(UTC)
    repository = RecipientAddressRepository(session)
    disabled = 0
    for reason in set(reasons.values()):
        keys = [key for key, why in reasons.items() if why == reason]
        disabled += await repository.disable(
            kind=kind.value, keys=keys, reason=reason, at=at, provider=provider
        )
    return disabled


async def mark_web_push_used(
    session: AsyncSession, *, endpoints: Sequence[str], at: datetime | None = None
) -> None:
    """Note when the push service last took a message for these browsers."""
    await RecipientAddressRepository(session).mark_used(
        kind=AddressKind.WEB_PUSH.value, keys=sorted(set(endpoints)), at=at or datetime.now(UTC)
    )


def display_value(address: RecipientAddress) -> str:
    """What an admin may see of an address: never a push endpoint's secret path or a whole
    device token."""
    if address.kind == AddressKind.WEB_PUSH.value:
        parts = urlsplit(address.key)
        return f"{parts.scheme}://{parts.netloc}/…{address.key[-6:]}"
    if address.kind == AddressKind.MOBILE_PUSH.value:
        return f"…{address.key[-6:]}"
    if address.kind == AddressKind.WEBHOOK.value:
        parts = urlsplit(address.key)
        return f"{parts.scheme}://{parts.hostname}/…{address.key[-6:]}"
    return address.key


# --- sync ---------------------------------------------------------------------------------------


async def start_sync(session: AsyncSession, *, actor: Principal | None) -> RecipientSync:
    """A pending sync job; :func:`queue_sync` hands it to a worker once committed."""
    return await RecipientSyncRepository(session).add(
        RecipientSync(
            status=SyncStatus.PENDING.value,
            requested_by=actor.user_id if actor is not None else None,
        )
    )


async def queue_sync(broker: Broker, sync_id: uuid.UUID) -> None:
    await task_messages.recipients_sync(str(sync_id)).publish(broker)


async def get_sync(session: AsyncSession, sync_id: str) -> RecipientSync | None:
    try:
        ident = uuid.UUID(sync_id)
    except ValueError as exc:
        raise ValidationError("Not a sync id", field="id") from exc
    return await RecipientSyncRepository(session).get(ident)


def is_stalled(sync: RecipientSync, *, now: datetime, stall_seconds: float) -> bool:
    """A running job whose runner committed no page (nor took the job) for ``stall_seconds``:
    its worker died or hangs, and another may take it over."""
    if sync.status != SyncStatus.RUNNING.value:
        return False
    last = sync.heartbeat_at or sync.started_at or sync.created_at
    return last < now - timedelta(seconds=stall_seconds)


async def request_sync(
    session: AsyncSession, *, actor: Principal | None, stall_seconds: float
) -> RecipientSync:
    """What ``syncRecipients`` hands to a worker: the newest stalled job, to be resumed from its
    last committed page (its task is sent again, and the worker that takes it counts a resume),
    or else a new pending job."""
    now = datetime.now(UTC)
    stalled = await RecipientSyncRepository(session).newest_running(
        quiet_since=now - timedelta(seconds=stall_seconds)
    )
    if stalled is not None:
        log.warning("recipient sync %s stalled; resuming it", stalled.id)
        return stalled
    return await start_sync(session, actor=actor)


async def run_sync(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    users: UserDirectory,
    sync_id: uuid.UUID,
    page_size: int,
    stall_seconds: float = 120.0,
    takeover: bool = False,
    on_page: Callable[[int, int], None] | None = None,
) -> RecipientSync | None:
    """Walk the auth service's user list page by page into ``recipients``.

    This is the job's own boundary (the Celery task and the CLI run it): each page commits
    with the job's progress and heartbeat, so ``recipientSync`` shows it while the job runs,
    and a job stopped half way has kept the pages it did. A job already running is resumed
    from the page after its last committed one when ``takeover`` is set (the task was
    redelivered: its worker died) or when it is stalled (no page for ``stall_seconds``);
    otherwise it is left to the runner that holds it. Each runner takes the job with a token
    of its own and checks it, under the row's lock, before every page it stores: a runner
    that was taken over stops without writing. Storing a page again rewrites the same rows.
    ``None``: no such job (its request was rolled back).
    """
    runner = uuid.uuid4()
    async with sessionmaker() as session:
        claimed = await _claim(
            session,
            sync_id,
            runner=runner,
            page_size=page_size,
            stall_seconds=stall_seconds,
            takeover=takeover,
        )
        await session.commit()
    if claimed is None:
        log.warning("recipient sync %s does not exist; nothing to run", sync_id)
        return None
    sync = claimed
    if sync.status != SyncStatus.RUNNING.value or sync.runner != runner:
        return sync
    size = sync.page_size or page_size
    page = sync.pages_done + 1
    error: str | None = None
    while True:
        try:
            profiles, more = await users.list_page(page, size, cache=False, store=False)
        except UnavailableError as exc:
            error = exc.message
            break
        async with sessionmaker() as session:
            sync = await _locked(session, sync_id)
            if sync.runner != runner:
                log.warning("recipient sync %s was taken over; this runner stops", sync_id)
                return sync
            now = datetime.now(UTC)
            await RecipientRepository(session).store_profiles(
                [_row_of(p) for p in profiles], source="auth", refreshed_at=now
            )
            sync.pages_done = page
            sync.recipients_synced += len(profiles)
            sync.heartbeat_at = now
            await session.commit()
        if on_page is not None:
            on_page(sync.pages_done, sync.recipients_synced)
        if not more:
            break
        page += 1
    async with sessionmaker() as session:
        sync = await _locked(session, sync_id)
        if sync.runner != runner:
            return sync
        sync.status = (SyncStatus.FAILED if error else SyncStatus.SUCCEEDED).value
        sync.error = error
        sync.finished_at = datetime.now(UTC)
        await session.commit()
    return sync


async def fail_sync(session: AsyncSession, *, sync_id: uuid.UUID, error: str) -> None:
    """Mark a job failed that never ran (it could not be queued)."""
    sync = await _locked(session, sync_id)
    sync.status = SyncStatus.FAILED.value
    sync.error = error
    sync.finished_at = datetime.now(UTC)


async def _claim(
    session: AsyncSession,
    sync_id: uuid.UUID,
    *,
    runner: uuid.UUID,
    page_size: int,
    stall_seconds: float,
    takeover: bool,
) -> RecipientSync | None:
    """Start a pending job, or take over a running one whose runner died (``takeover``) or
    stalled, for ``runner``; a job finished, or running live elsewhere, is left as it is."""
    sync = await RecipientSyncRepository(session).get(sync_id, for_update=True)
    if sync is None:
        return None
    now = datetime.now(UTC)
    if sync.status == SyncStatus.PENDING.value:
        sync.status = SyncStatus.RUNNING.value
        sync.started_at = now
        sync.page_size = sync.page_size or page_size
    elif sync.status == SyncStatus.RUNNING.value and (
        takeover or is_stalled(sync, now=now, stall_seconds=stall_seconds)
    ):
        log.warning(
            "recipient sync %s: resuming after page %d (%d recipients so far)",
            sync_id,
            sync.pages_done,
            sync.recipients_synced,
        )
        sync.resumes += 1
        sync.page_size = sync.page_size or page_size
    else:
        return sync
    sync.runner = runner
    sync.heartbeat_at = now
    return sync


async def _locked(session: AsyncSession, sync_id: uuid.UUID) -> RecipientSync:
    sync = await RecipientSyncRepository(session).get(sync_id, for_update=True)
    if sync is None:
        raise NotFoundError(f"No recipient sync {sync_id}")
    return sync


async def sync_now(
    settings: Settings, *, on_page: Callable[[int, int], None] | None = None
) -> RecipientSync:
    """Run one sync in this process, with its own clients (``herald recipients sync``): the
    job is recorded like one the ``syncRecipients`` mutation started."""
    engine = create_engine(settings, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(settings.redis_url)
    try:
        async with httpx.AsyncClient(timeout=settings.auth_timeout_seconds) as http:
            async with sessionmaker() as session:
                sync = await start_sync(session, actor=None)
                await session.commit()
            done = await run_sync(
                sessionmaker,
                users=UserDirectory(settings, http, redis),
                sync_id=sync.id,
                page_size=settings.recipient_sync_page_size,
                stall_seconds=settings.recipient_sync_stall_seconds,
                on_page=on_page,
            )
            assert done is not None  # committed just above
            return done
    finally:
        await redis.aclose()
        await engine.dispose()
