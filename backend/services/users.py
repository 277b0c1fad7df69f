"""User profiles from the auth service.

The profile shape is the auth service's: ``id``, ``email``, ``first_name``, ``last_name``,
``login``, plus optional ``phone``, ``locale``, ``timezone``. :class:`UserDirectory` fetches
them over HTTP and keeps them in Redis for ``HERALD_USER_CACHE_TTL_SECONDS``.

Profiles missing from the cache are fetched in parallel, at most ``HERALD_AUTH_CONCURRENCY``
requests at a time per process: one request per profile, or, where the auth service offers a
bulk endpoint (``HERALD_AUTH_BULK_PROFILES_PATH``), one request per batch of
``HERALD_AUTH_BULK_BATCH_SIZE`` ids. The bulk endpoint takes ``POST {"ids": [...]}`` and answers
``{"items": [profile, ...]}``; an asked id missing from the items is an unknown user, as a 404
is for the one-profile endpoint.

With a :class:`ProfileStore` (the recipients in PostgreSQL, ``backend.services.recipients``),
look-ups go Redis first, then the store (one query per batch), and only ids missing there or
stale go to the auth service; what it sends back is written to both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.channels.base import Recipient
from backend.config import Settings
from backend.errors import UserDirectoryUnavailable
from backend.services.expiring import SingleFlight
from backend.services.retries import backoff_seconds

log = logging.getLogger(__name__)

CACHE_KEY_PREFIX = "herald:user:"
# Events can keep naming a deleted user for a while; remembering the 404 keeps that flood off the
# auth service, and keeping it short lets an id that comes back be seen again soon.
UNKNOWN_USER_TTL_SECONDS = 60
# What a cached 404 holds: JSON null, so every cache entry is JSON.
UNKNOWN_USER_MARKER = b"null"
# After a Redis error the cache is skipped for this long, so an outage costs one failed round
# trip (and one warning) per interval rather than one per look-up.
CACHE_RETRY_AFTER_SECONDS = 5.0


# A profile is what a channel addresses a message to: one type, defined with the channels so
# they need nothing from the services.
UserProfile = Recipient


class ProfileStore(Protocol):
    """Profiles kept between the Redis cache and the auth service."""

    async def read(
        self, user_ids: Sequence[str]
    ) -> tuple[dict[str, UserProfile], dict[str, UserProfile]]:
        """(fresh profiles, profiles to use when the auth service does not know the user)."""
        ...

    async def write(self, profiles: Mapping[str, UserProfile | None]) -> None:
        """Keep what the auth service sent."""


class UserDirectory:
    """User profiles from the auth service, cached in Redis.

    One instance per process, built where the process creates its clients (the API lifespan, a
    worker's event loop); it uses the caller's ``httpx.AsyncClient`` and Redis pool and closes
    neither. A profile is cached for ``user_cache_ttl_seconds`` (0 turns the cache off); an
    unknown user for at most :data:`UNKNOWN_USER_TTL_SECONDS`. At most ``max_concurrency``
    (default ``auth_concurrency``) requests are in flight at once, across all look-ups.

    Each request is bounded by ``auth_timeout_seconds``; connection errors, timeouts, 5xx and 429
    are retried ``auth_retries`` times with exponential backoff and jitter. What still fails, and
    any other 4xx, raises :class:`~backend.errors.UserDirectoryUnavailable`. Redis errors never
    fail a look-up: the cache is skipped and a warning logged.
    """

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        redis: Redis,
        *,
        max_concurrency: int | None = None,
        key_prefix: str = CACHE_KEY_PREFIX,
        backoff_base_seconds: float = 0.2,
        backoff_cap_seconds: float = 2.0,
        store: ProfileStore | None = None,
    ) -> None:
        if max_concurrency is None:
            max_concurrency = settings.auth_concurrency
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._http = http
        self._redis = redis
        self._base_url = settings.auth_url.rstrip("/")
        self._user_path = settings.auth_user_path
        self._list_path = settings.auth_users_list_path
        self._bulk_path = settings.auth_bulk_profiles_path
        self._bulk_size = settings.auth_bulk_batch_size
        self._timeout = settings.auth_timeout_seconds
        self._retries = settings.auth_retries
        self._ttl = settings.user_cache_ttl_seconds
        self._unknown_ttl = min(UNKNOWN_USER_TTL_SECONDS, self._ttl)
        self._headers = {"Accept": "application/json"}
        token = settings.auth_api_token
        if token is not None and token.get_secret_value():
            self._headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._max_concurrency = max_concurrency
        # Shared by every look-up on this instance, so concurrent batches together stay within
        # the bound the auth service is promised, not each batch on its own.
        self._slots = asyncio.Semaphore(max_concurrency)
        self._key_prefix = key_prefix
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._cache_skipped_until = 0.0
        self._store = store
        # The users being fetched now, by look-ups still running: the others wait for them.
        self._flights: SingleFlight[str, UserProfile | None] = SingleFlight()

    async def get(self, user_id: str) -> UserProfile | None:
        """The user's profile, or ``None`` when the auth service does not know the user."""
        user_id = str(user_id)
        return (await self.get_many([user_id]))[user_id]

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, UserProfile | None]:
        """Profiles for many users: one ``MGET`` for the cached ones, concurrent fetches (at most
        ``max_concurrency`` requests at a time, in bulk batches where the auth service offers a
        bulk endpoint) for the rest, written back in one pipeline. A user another look-up of
        this directory is fetching already is not asked for again: this one waits for that
        answer (and fetches the user itself if that look-up fails or is cancelled).

        Every asked id is a key of the result; unknown users map to ``None``. When a fetch gives
        up, :class:`~backend.errors.UserDirectoryUnavailable` is raised and the profiles that
        did arrive are cached, so the retry that follows asks only for the rest.
        """
        ids = list(dict.fromkeys(str(user_id) for user_id in user_ids))
        found = await self._cache_read(ids)
        misses = [user_id for user_id in ids if user_id not in found]
        if misses:
            found.update(await self._load_shared(misses))
        return {user_id: found[user_id] for user_id in ids}

    async def _load_shared(self, user_ids: list[str]) -> dict[str, UserProfile | None]:
        """``_load`` for the users no other look-up is loading; the others' answers for the
        rest. An error is never shared: what another look-up failed to load is loaded here,
        after reading the cache (where that look-up kept what it did fetch)."""
        answers, _ = await self._flights.load_many(user_ids, self._load, reload=self._reload)
        return answers

    async def _reload(self, user_ids: list[str]) -> dict[str, UserProfile | None]:
        found = await self._cache_read(user_ids)
        rest = [user_id for user_id in user_ids if user_id not in found]
        if rest:
            found.update(await self._load(rest))
        return found

    async def _load(self, misses: list[str]) -> dict[str, UserProfile | None]:
        """Profiles not in the cache: from the profile store, else the auth service; kept in
        the cache (and the store) before they are returned, and when a fetch gives up."""
        stored: dict[str, UserProfile | None] = {}
        fallback: dict[str, UserProfile] = {}
        if self._store is not None:
            fresh, fallback = await self._store.read(misses)
            stored.update(fresh)
            misses = [user_id for user_id in misses if user_id not in fresh]
        fetched: dict[str, UserProfile | None] = {}
        try:
            if misses:
                await self._fetch_many(misses, fetched)
        except UserDirectoryUnavailable:
            # Profiles that did arrive are good; keep them for the retry that follows.
            await self._keep(stored, fetched)
            raise
        for user_id, profile in fallback.items():
            # Unknown to the auth service, but a service identified the user.
            if fetched.get(user_id, profile) is None:
                stored[user_id] = profile
                del fetched[user_id]
        await self._keep(stored, fetched)
        return {**stored, **fetched}

    async def _keep(
        self, stored: dict[str, UserProfile | None], fetched: dict[str, UserProfile | None]
    ) -> None:
        """Cache what the store and the auth service gave; store what the auth service sent."""
        await self._cache_write({**stored, **fetched})
        if self._store is not None and fetched:
            await self._store.write(fetched)

    async def iter_all(self, page_size: int = 500) -> AsyncIterator[list[UserProfile]]:
        """Every user, one page (a list of at most ``page_size`` profiles) at a time.

        Pages are fetched as they are consumed, so no more than one is held in memory.
        """
        page = 1
        while True:
            profiles, more = await self.list_page(page, page_size)
            if profiles:
                yield profiles
            if not more:
                return
            page += 1

    async def list_page(
        self, page: int, page_size: int, *, cache: bool = True, store: bool = True
    ) -> tuple[list[UserProfile], bool]:
        """One page (1-based) of the auth service's user list, and whether more follow.

        With ``cache``, the profiles also fill the cache, so sending to them later needs no
        look-ups. With ``store`` (and a profile store), they are also written to it, one
        statement for the page: an allUsers fan-out keeps the recipients up to date as it
        goes. A caller that stores the page itself (a recipient sync) passes ``False``."""
        if page_size < 1 or page < 1:
            raise ValueError("page and page_size must be at least 1")
        url = self._base_url + self._list_path
        response = await self._request(url, params={"page": page, "size": page_size})
        body = _json_body(response)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UserDirectoryUnavailable(
                f"The auth service's user list at {url} has no 'items' list"
            )
        profiles = [_profile(item, url) for item in items]
        total = body.get("total")
        # A short page ends the list even when 'total' is missing or stale.
        more = len(items) >= page_size and not (
            isinstance(total, int) and (page - 1) * page_size + len(items) >= total
        )
        listed: dict[str, UserProfile | None] = {p.id: p for p in profiles}
        writes = []
        if profiles and cache:
            writes.append(self._cache_write(listed))
        if profiles and store and self._store is not None:
            writes.append(self._store.write(listed))
        # Neither raises (each logs its own failure): side by side, the page costs the slower.
        await asyncio.gather(*writes)
        return profiles, more

    async def _fetch_many(self, user_ids: list[str], into: dict[str, UserProfile | None]) -> None:
        wanted = []
        for user_id in user_ids:
            if user_id:
                wanted.append(user_id)
            else:
                into[user_id] = None  # an empty id names no one: nothing to ask
        size = self._bulk_size if self._bulk_path else 1
        batches = [wanted[n : n + size] for n in range(0, len(wanted), size)]
        pending = iter(batches)

        async def drain() -> None:
            for batch in pending:
                into.update(await self._fetch_batch(batch))

        if len(batches) <= 1:
            await drain()
            return
        # A fixed set of workers rather than a task per batch keeps thousands of ids cheap; the
        # task group cancels the rest as soon as one fetch gives up.
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._max_concurrency, len(batches))):
                    group.create_task(drain())
        except BaseExceptionGroup as errors:
            unavailable, other = errors.split(UserDirectoryUnavailable)
            if other is None and unavailable is not None:
                raise unavailable.exceptions[0]  # noqa: B904 - its own cause is the useful one
            raise

    async def _fetch_batch(self, user_ids: list[str]) -> dict[str, UserProfile | None]:
        if not self._bulk_path:
            return {user_id: await self._fetch(user_id) for user_id in user_ids}
        url = self._base_url + self._bulk_path
        async with self._slots:
            response = await self._request(url, method="POST", body={"ids": user_ids})
        body = _json_body(response)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UserDirectoryUnavailable(
                f"The auth service's bulk profiles at {url} answered without an 'items' list; "
                "check HERALD_AUTH_BULK_PROFILES_PATH"
            )
        found: dict[str, UserProfile | None] = dict.fromkeys(user_ids)
        for item in items:
            profile = _profile(item, url)
            if profile.id in found:  # a profile not asked for is not this batch's to keep
                found[profile.id] = profile
        return found

    async def _fetch(self, user_id: str) -> UserProfile | None:
        url = self._base_url + self._user_path.format(user_id=quote(user_id, safe=""))
        async with self._slots:
            response = await self._request(url, unknown_is_none=True)
        if response.status_code == 404:
            return None
        return _profile(_json_body(response), url)

    async def _request(
        self,
        url: str,
        *,
        method: str = "GET",
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        unknown_is_none: bool = False,
    ) -> httpx.Response:
        tries = self._retries + 1
        headers = self._headers
        content = None
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
            content = orjson.dumps(body)
        problem = ""
        cause: BaseException | None = None
        retry_after: float | None = None
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(self._backoff(attempt, retry_after))
            retry_after = None
            try:
                # httpx's timeout applies to each phase (connect, every read) separately; the
                # outer one bounds the whole request, however slowly a server dribbles bytes.
                async with asyncio.timeout(self._timeout):
                    response = await self._http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        headers=headers,
                        timeout=self._timeout,
                    )
            except httpx.UnsupportedProtocol as exc:
                raise UserDirectoryUnavailable(
                    f"HERALD_AUTH_URL is not an http(s) URL: {self._base_url!r}"
                ) from exc
            except (httpx.TransportError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
                cause = exc
                continue
            status = response.status_code
            if status == 200 or (status == 404 and unknown_is_none):
                return response
            if status == 429 or status >= 500:
                problem = f"HTTP {status}"
                cause = None
                retry_after = _seconds(response.headers.get("Retry-After"))
                continue
            if status in (401, 403):
                raise UserDirectoryUnavailable(
                    f"The auth service refused Herald's credentials (HTTP {status}) for {method} "
                    f"{url}; check HERALD_AUTH_API_TOKEN"
                )
            raise UserDirectoryUnavailable(
                f"The auth service answered HTTP {status} for {method} {url}; this is a "
                "misconfiguration, not an unknown user: check HERALD_AUTH_URL and the auth paths"
            )
        raise UserDirectoryUnavailable(
            f"The auth service did not answer {method} {url} after {tries} tries: {problem}"
        ) from cause

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = backoff_seconds(attempt, base=self._backoff_base, cap=self._backoff_cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_cap))
        return delay

    def _key(self, user_id: str) -> str:
        return self._key_prefix + user_id

    def _cache_usable(self) -> bool:
        return self._ttl > 0 and time.monotonic() >= self._cache_skipped_until

    def _cache_failed(self, exc: RedisError) -> None:
        self._cache_skipped_until = time.monotonic() + CACHE_RETRY_AFTER_SECONDS
        log.warning(
            "Redis is unavailable for the user cache (%s: %s); fetching profiles from the auth "
            "service without it for %.0f s",
            type(exc).__name__,
            exc,
            CACHE_RETRY_AFTER_SECONDS,
        )

    async def _cache_read(self, user_ids: list[str]) -> dict[str, UserProfile | None]:
        if not user_ids or not self._cache_usable():
            return {}
        try:
            values = await self._redis.mget([self._key(user_id) for user_id in user_ids])
        except RedisError as exc:
            self._cache_failed(exc)
            return {}
        hits: dict[str, UserProfile | None] = {}
        for user_id, raw in zip(user_ids, values, strict=True):
            if raw is None:
                continue
            try:
                data = orjson.loads(raw)
                hits[user_id] = None if data is None else UserProfile.from_json(data)
            except (ValueError, KeyError, TypeError):
                # An entry this code cannot read (an older format, say) is a miss: the fetch
                # that follows overwrites it.
                continue
        return hits

    async def _cache_write(self, profiles: dict[str, UserProfile | None]) -> None:
        if not profiles or not self._cache_usable():
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, profile in profiles.items():
                    if profile is None:
                        pipe.set(self._key(user_id), UNKNOWN_USER_MARKER, ex=self._unknown_ttl)
                    else:
                        pipe.set(self._key(user_id), orjson.dumps(profile.to_json()), ex=self._ttl)
                await pipe.execute()
        except RedisError as exc:
            self._cache_failed(exc)


async def evict_cached_profiles(redis: Redis, user_ids: Iterable[str]) -> int:
    """Drop cached profiles so the next look-up reads the recipient store (after a service
    changed a recipient, or a user was forgotten); how many keys went. Raises RedisError."""
    keys = [CACHE_KEY_PREFIX + str(user_id) for user_id in user_ids]
    return int(await redis.delete(*keys)) if keys else 0


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise UserDirectoryUnavailable(
            f"The auth service answered {response.request.method} {response.request.url} with "
            "something other than JSON"
        ) from exc


def _profile(data: Any, url: str) -> UserProfile:
    try:
        return UserProfile.from_json(data)
    except (KeyError, TypeError) as exc:
        raise UserDirectoryUnavailable(
            f"The auth service sent a profile without an 'id' from {url}"
        ) from exc


def _seconds(retry_after: str | None) -> float | None:
    """A ``Retry-After`` given in seconds; the HTTP-date form is left to the backoff."""
    if retry_after is None:
        return None
    try:
        value = float(retry_after)
    except ValueError:
        return None
    return value if value >= 0 else None
