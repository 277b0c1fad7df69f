"""Status webhooks: admins register endpoints; delivery status changes are POSTed to them,
signed, retried with backoff, and every attempt is logged.

Flow: every status change passes through ``deliveries.announce``, which hands the batch to
:class:`WebhookNotifier` (in each worker process). It keeps the active endpoints in memory for
``webhook_cache_seconds`` and, for each endpoint whose filter matches some of the changes,
enqueues one ``webhooks.deliver`` task carrying those changes. The task POSTs them
(:func:`deliver`), logs the attempt, and is retried by Celery with exponential backoff
(:func:`retry_delay`) until it succeeds or ``webhook_max_attempts`` is reached.

The request follows Standard Webhooks (https://www.standardwebhooks.com/), so receivers can
verify it with that project's libraries (documented in the README):

    POST <endpoint url>
    Content-Type: application/json
    webhook-id: <message id: the same on every retry, for de-duplication>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>
    Herald-Webhook-Attempt: <1, 2, ...>

    {"id": "<message id>", "type": "delivery.status_changed", "created_at": "<ISO 8601>",
     "data": [{"id", "event_id", "event_type", "campaign_id", "user_id", "channel", "status",
               "sequence", "at", "reason"}, ...]}

The key is the base64-decoded part of the endpoint's ``whsec_<base64>`` secret. Endpoints
with ``legacy_signature`` (every endpoint registered before Standard Webhooks, until the
deprecation ends) also get the former headers, ``Herald-Webhook-Id`` and ``Herald-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<raw body>")>``, made with the same key.

An endpoint that asks for email engagements (``engagements``: opened, clicked; none unless
asked) also gets each open and click that the tracking endpoints record, in the API process, as
``{"type": "delivery.engaged", "data": [{"id", "event_id", "event_type", "campaign_id",
"user_id", "channel", "kind", "url", "at"}]}``, signed and retried the same way. Its event
types filter applies; its statuses filter does not.

``sequence`` numbers a delivery's status changes (its position in the delivery's timeline in
the history store): changes posted by different tasks can arrive out of order, and a receiver
keeps the highest. Within one message the changes are sorted by delivery, then sequence.

Any 2xx answer is success; anything else (3xx included: redirects are not followed), a
timeout or a connection error is retried.

Unless ``webhook_allow_private_targets`` (the default outside production), an endpoint may not
point at a private, loopback, link-local or otherwise non-global address (169.254.169.254,
``[::1]:6379``): refused when saved, and checked again at send time after DNS resolution,
the request then going to the very address that was checked (a name that resolves elsewhere
the second time cannot redirect it).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal
from backend.broker import Broker
from backend.channels.outbound import (
    ATTEMPT_HEADER,
    ID_HEADER,
    LEGACY_ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TargetRefused,
    checked_address,
    pinned_target,
    sign,
    sign_legacy,
    signing_key,
    standard_secret,
    whsec_key,
)
from backend.config import Environment, Settings
from backend.db.history.base import DeliveryRecord, DeliveryStatus, Engagement, EngagementKind
from backend.db.models import WebhookDelivery, WebhookEndpoint
from backend.db.repositories.webhooks import WebhookDeliveryRepository, WebhookEndpointRepository
from backend.errors import NotFoundError, ValidationError
from backend.services import task_messages
from backend.services.expiring import ExpiringCache
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_cursor,
    encode_time_cursor,
)
from backend.services.retries import backoff_seconds

log = logging.getLogger(__name__)

EVENT_TYPE = "delivery.status_changed"
ENGAGED = "delivery.engaged"  # opens and clicks, for the endpoints that ask for them
MAX_ENDPOINTS = 100


# --- signed requests (signatures and the SSRF guard: backend.channels.outbound) ------------


def request_headers(
    endpoint: WebhookEndpoint, body: bytes, *, message_id: str, attempt: int, timestamp: int
) -> dict[str, str]:
    """The headers of one attempt: Standard Webhooks', plus the deprecated ones if the endpoint
    still wants them."""
    key = signing_key(endpoint.secret)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Herald-Webhooks/1",
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key, body, message_id=message_id, timestamp=timestamp),
        ATTEMPT_HEADER: str(attempt),
    }
    if endpoint.legacy_signature:
        headers[LEGACY_ID_HEADER] = message_id
        headers[LEGACY_SIGNATURE_HEADER] = sign_legacy(key, body, timestamp=timestamp)
    return headers


# --- endpoints (admins) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointData:
    """An endpoint as an admin gives it; ``None`` fields of an update are left as they are."""

    url: str | None = None
    secret: str | None = None
    description: str | None = None
    event_types: Sequence[str] | None = None
    statuses: Sequence[DeliveryStatus] | None = None
    engagements: Sequence[EngagementKind] | None = None
    active: bool | None = None
    legacy_signature: bool | None = None


def _check_url(settings: Settings, url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    allowed = ("https",) if settings.environment is Environment.PRODUCTION else ("https", "http")
    if parts.scheme not in allowed or not parts.hostname or len(url) > 2000:
        schemes = " or ".join(allowed)
        raise ValidationError(f"The URL must be an absolute {schemes} URL", field="url")
    return url


async def check_target(settings: Settings, url: str) -> None:
    """Refuse, as a ValidationError on ``url``, an endpoint URL whose host is or resolves to a
    non-global address (unless the settings allow them). A name that does not resolve yet
    passes: it is checked again at every send."""
    if settings.webhook_private_targets_allowed:
        return
    try:
        await checked_address(urlsplit(url))
    except TargetRefused as exc:
        raise ValidationError(f"The URL is refused: {exc}", field="url") from exc
    except (OSError, UnicodeError):
        return


def _check(settings: Settings, data: EndpointData) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if data.url is not None:
        values["url"] = _check_url(settings, data.url)
    if data.secret is not None:
        values["secret"] = _checked_secret(data.secret)
    if data.description is not None:
        values["description"] = data.description.strip()[:500]
    if data.event_types is not None:
        types = list(dict.fromkeys(t.strip() for t in data.event_types if t.strip()))
        if len(types) > 200 or any(len(t) > 100 for t in types):
            raise ValidationError("Too many or too long event types", field="eventTypes")
        values["event_types"] = types
    if data.statuses is not None:
        values["statuses"] = list(dict.fromkeys(s.value for s in data.statuses))
    if data.engagements is not None:
        values["engagements"] = list(dict.fromkeys(k.value for k in data.engagements))
    if data.active is not None:
        values["active"] = data.active
    if data.legacy_signature is not None:
        values["legacy_signature"] = data.legacy_signature
    return values


def _checked_secret(secret: str) -> str:
    """A secret as given, stored in the ``whsec_`` form: ``whsec_<base64>`` of a 24 to 64 byte
    key, or any other string of 16 to 200 characters, keyed with its UTF-8 bytes."""
    key = whsec_key(secret)
    if key is not None:
        if not 24 <= len(key) <= 64:
            raise ValidationError("A whsec_ secret's key must be 24 to 64 bytes", field="secret")
    elif not 16 <= len(secret) <= 200:
        raise ValidationError("The secret must be 16 to 200 characters", field="secret")
    return standard_secret(secret)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


async def create_endpoint(
    session: AsyncSession, *, actor: Principal, settings: Settings, data: EndpointData
) -> WebhookEndpoint:
    """Register an endpoint; without a ``secret`` one is made (read it from the result)."""
    if data.url is None:
        raise ValidationError("The URL is required", field="url")
    values = _check(settings, data)
    await check_target(settings, values["url"])
    repository = WebhookEndpointRepository(session)
    if len(await repository.all()) >= MAX_ENDPOINTS:
        raise ValidationError(f"At most {MAX_ENDPOINTS} endpoints", field="url")
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        secret=values.pop("secret", None) or new_secret(),
        description=values.pop("description", ""),
        event_types=values.pop("event_types", []),
        statuses=values.pop("statuses", []),
        engagements=values.pop("engagements", []),
        active=values.pop("active", True),
        legacy_signature=values.pop("legacy_signature", False),
        created_by=actor.user_id,
        **values,
    )
    return await repository.add(endpoint)


async def _get(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    try:
        ident = uuid.UUID(endpoint_id)
    except ValueError as exc:
        raise NotFoundError("No such webhook endpoint", field="id") from exc
    endpoint = await WebhookEndpointRepository(session).get(ident)
    if endpoint is None:
        raise NotFoundError("No such webhook endpoint", field="id")
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    *,
    actor: Principal,
    settings: Settings,
    endpoint_id: str,
    data: EndpointData,
) -> WebhookEndpoint:
    """Change the given fields of an endpoint (workers see it within the cache time)."""
    endpoint = await _get(session, endpoint_id)
    values = _check(settings, data)
    if "url" in values:
        await check_target(settings, values["url"])
    for name, value in values.items():
        setattr(endpoint, name, value)
    endpoint.updated_at = datetime.now(UTC)
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, *, actor: Principal, endpoint_id: str) -> str:
    """Remove an endpoint and its delivery log; retries still queued for it are dropped."""
    endpoint = await _get(session, endpoint_id)
    await WebhookEndpointRepository(session).delete(endpoint.id)
    return str(endpoint.id)


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return await WebhookEndpointRepository(session).all()


async def list_deliveries(
    session: AsyncSession, *, endpoint_id: str, first: int, after: str | None
) -> Page[WebhookDelivery]:
    """An endpoint's delivery attempts, newest first."""
    limit = check_page_size(first)
    endpoint = await _get(session, endpoint_id)
    position = decode_time_cursor("webhook-delivery", after)
    rows = await WebhookDeliveryRepository(session).page(
        endpoint_id=endpoint.id, after=position, limit=limit + 1
    )
    items = [(encode_time_cursor("webhook-delivery", r.created_at, r.id), r) for r in rows[:limit]]
    return Page(items=items, has_next_page=len(rows) > limit)


# --- from status changes to tasks (worker side) -------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    id: str
    event_types: frozenset[str]
    statuses: frozenset[str]
    engagements: frozenset[str]

    def wants(self, update: dict[str, Any]) -> bool:
        return self._takes(update) and (not self.statuses or update.get("status") in self.statuses)

    def wants_engagement(self, item: dict[str, Any]) -> bool:
        """An open or click: only the kinds the endpoint asked for (none unless it did), of
        the event types it takes."""
        return item.get("kind") in self.engagements and self._takes(item)

    def _takes(self, item: dict[str, Any]) -> bool:
        """Whether ``item`` is of an event type the endpoint takes (empty: every one)."""
        return not self.event_types or item.get("event_type") in self.event_types


def in_order(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``updates`` grouped by delivery, each delivery's changes in sequence order: the order a
    receiver applying them one by one must see."""
    return sorted(updates, key=lambda u: (u["id"], u["sequence"]))


class WebhookQueue(Protocol):
    async def enqueue(self, message: task_messages.TaskMessage) -> None:
        """Send a ``webhooks.deliver`` task (:func:`task_messages.webhook_deliver`)."""


class BrokerWebhookQueue:
    """Enqueues ``webhooks.deliver`` tasks through the confirming publisher."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def enqueue(self, message: task_messages.TaskMessage) -> None:
        await message.publish(self.broker)


def delivery_fields(record: DeliveryRecord) -> dict[str, Any]:
    """What names a delivery in every item announced of it (a status change on the live feed
    and to webhooks, an open or click): the delivery, its event and its recipient."""
    return {
        "id": record.id,
        "event_id": record.event_id,
        "event_type": record.event_type,
        "campaign_id": record.campaign_id,
        "user_id": record.user_id,
        "channel": record.channel.value,
    }


def engagement_item(record: DeliveryRecord, engagement: Engagement) -> dict[str, Any]:
    """One open or click in a ``delivery.engaged`` message: the delivery, as in a status
    change, with what its recipient did, when, and the link's URL for a click."""
    return {
        **delivery_fields(record),
        "kind": engagement.kind.value,
        "url": engagement.url,
        "at": engagement.at.isoformat(),
        **({"tenant_id": record.tenant_id} if record.tenant_id is not None else {}),
    }


@dataclass
class WebhookNotifier:
    """Turns announced status changes (``deliveries.StatusWebhooks``), and the opens and clicks
    the API records, into webhook tasks.

    The active endpoints are read at most every ``cache_seconds``, by one query at a time;
    with none registered a batch costs a dictionary look-up."""

    sessionmaker: async_sessionmaker[AsyncSession]
    queue: WebhookQueue
    cache_seconds: float = 5.0
    _targets: ExpiringCache[None, list[_Target]] = field(init=False)

    def __post_init__(self) -> None:
        self._targets = ExpiringCache(self.cache_seconds)

    async def notify(self, updates: list[dict[str, Any]]) -> None:
        """Enqueue one task per endpoint whose filter matches some of ``updates``. Never
        raises: a webhook problem must not fail a delivery."""
        await self._enqueue(updates, _Target.wants, in_order, None)

    async def wants_engagements(self) -> bool:
        """Whether an active endpoint asks for opens or clicks (from the cached list): when
        none does, recording one reads nothing more. False when the list cannot be read."""
        try:
            return any(target.engagements for target in await self._active())
        except Exception:
            log.exception("the webhook endpoints could not be read")
            return False

    async def notify_engagements(self, items: list[dict[str, Any]]) -> None:
        """Enqueue one ``delivery.engaged`` task per endpoint that asks for some of ``items``
        (:func:`engagement_item`). Never raises: a webhook problem must not fail the pixel or
        the redirect."""
        await self._enqueue(items, _Target.wants_engagement, list, ENGAGED)

    async def _enqueue(
        self,
        items: list[dict[str, Any]],
        wants: Callable[[_Target, dict[str, Any]], bool],
        arrange: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        type: str | None,
    ) -> None:
        """For each endpoint, the ``items`` it ``wants`` (``arrange``d) in one task."""
        try:
            targets = await self._active()
            created_at = datetime.now(UTC).isoformat()
            for target in targets:
                wanted = arrange([item for item in items if wants(target, item)])
                if wanted:
                    message = task_messages.webhook_deliver(
                        endpoint_id=target.id,
                        message_id=str(uuid.uuid4()),
                        created_at=created_at,
                        updates=wanted,
                        type=type,
                    )
                    await self.queue.enqueue(message)
        except Exception:
            kind = type or EVENT_TYPE
            log.exception("%s webhooks for %d items could not be enqueued", kind, len(items))

    async def _active(self) -> list[_Target]:
        async def load() -> list[_Target]:
            async with self.sessionmaker() as session:
                rows = await WebhookEndpointRepository(session).active()
            return [
                _Target(
                    str(r.id),
                    frozenset(r.event_types),
                    frozenset(r.statuses),
                    frozenset(r.engagements),
                )
                for r in rows
            ]

        return await self._targets.get(None, load)


# --- one POST (the task) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What became of one attempt: ``retry_in`` seconds when it should be tried again."""

    delivered: bool
    retry_in: float | None = None
    dropped: bool = False  # the endpoint is gone, inactive, or its address refused


def retry_delay(settings: Settings, attempt: int) -> float:
    """Backoff after failed attempt ``attempt``: base·2^(attempt-1), capped, times 0.5-1.0
    (10 s, 20 s, 40 s... up to an hour with the defaults)."""
    return backoff_seconds(
        attempt, base=settings.webhook_retry_base_seconds, cap=settings.webhook_retry_max_seconds
    )


def request_body(
    message_id: str, created_at: str, updates: list[dict[str, Any]], type: str | None = None
) -> bytes:
    """The JSON body (``type`` None: status changes): the same bytes on every retry."""
    document = {
        "id": message_id,
        "type": type or EVENT_TYPE,
        "created_at": created_at,
        "data": updates,
    }
    return json.dumps(document, separators=(",", ":")).encode()


async def deliver(
    session: AsyncSession,
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    endpoint_id: str,
    message_id: str,
    created_at: str,
    updates: list[dict[str, Any]],
    attempt: int,
    type: str | None = None,
) -> AttemptResult:
    """POST one message to its endpoint and log the attempt (the caller commits)."""
    try:
        endpoint = await _get(session, endpoint_id)
    except NotFoundError:
        log.info("webhook endpoint %s is gone; message %s dropped", endpoint_id, message_id)
        return AttemptResult(delivered=False, dropped=True)
    if not endpoint.active:
        log.info("webhook endpoint %s is inactive; message %s dropped", endpoint_id, message_id)
        return AttemptResult(delivered=False, dropped=True)
    body = request_body(message_id, created_at, updates, type)
    headers = request_headers(
        endpoint, body, message_id=message_id, attempt=attempt, timestamp=int(time.time())
    )
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    refused = False
    try:
        url: str = endpoint.url
        extensions: dict[str, Any] = {}
        if not settings.webhook_private_targets_allowed:
            url, host, extensions = await pinned_target(endpoint.url)
            headers.update(host)
        response = await http.post(
            url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            extensions=extensions,
        )
        status = response.status_code
        if not response.is_success:
            error = f"the endpoint answered {status}"
    except TargetRefused as exc:
        # Final: retrying would only probe the same private address again (a name rebound
        # to one is how such probing is attempted).
        error = f"refused: {exc}"[:500]
        refused = True
    except (OSError, UnicodeError) as exc:  # the name did not resolve
        error = f"cannot resolve the endpoint's host: {exc!r}"[:500]
    except httpx.TimeoutException:
        error = f"no answer within {settings.webhook_timeout_seconds} s"
    except httpx.HTTPError as exc:
        error = f"cannot reach the endpoint: {exc!r}"[:500]
    duration_ms = int((time.perf_counter() - started) * 1000)
    delivered = error is None
    retry_in = None
    if not delivered and not refused and attempt < settings.webhook_max_attempts:
        retry_in = retry_delay(settings, attempt)
    now = datetime.now(UTC)
    await WebhookDeliveryRepository(session).add(
        WebhookDelivery(
            id=uuid.uuid4(),
            endpoint_id=endpoint.id,
            message_id=message_id,
            attempt=attempt,
            succeeded=delivered,
            response_status=status,
            error=error,
            duration_ms=duration_ms,
            update_count=len(updates),
            next_retry_at=now + timedelta(seconds=retry_in) if retry_in is not None else None,
            created_at=now,
        )
    )
    if not delivered:
        log.warning(
            "webhook %s to endpoint %s, attempt %d: %s", message_id, endpoint_id, attempt, error
        )
    return AttemptResult(delivered=delivered, dropped=refused, retry_in=retry_in)
