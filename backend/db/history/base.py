"""The history store contract shared by the PostgreSQL and MongoDB stores, and what they do the
same way: reading a page, reading one record, moving one delivery."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Any, Protocol

from backend.channels import Channel
from backend.errors import ValidationError


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    # The provider confirmed the message reached the recipient's chat or inbox there and then
    # (Slack's ts, Telegram's message, Discord's message): a final status like ``sent``.
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEAD = "dead"
    # After ``sent``, from what the email provider said back (backend.services.email_feedback).
    BOUNCED = "bounced"
    COMPLAINED = "complained"


FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.DEAD,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.COMPLAINED,
    }
)
# Where a message got through: what opens and clicks are counted against.
GOT_THROUGH = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED})


class EngagementKind(StrEnum):
    """What a recipient did with an email (open and click tracking)."""

    OPENED = "opened"
    CLICKED = "clicked"


# A delivery keeps at most this many opens and clicks: a tracking link replayed in a loop
# cannot grow its record without bound. Counts stop there; the delivery's status never moves.
MAX_ENGAGEMENTS = 100


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: DeliveryStatus
    at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    at: datetime
    provider: str | None = None
    error: str | None = None  # None when the attempt succeeded


@dataclass(frozen=True, slots=True)
class Engagement:
    """One open or click of a delivered email: an event next to the status timeline, not a
    status (a sent email stays sent when it is opened)."""

    kind: EngagementKind
    at: datetime
    url: str | None = None  # the link followed, for a click


@dataclass(frozen=True, slots=True)
class EngagementCounts:
    """Opens and clicks of a set of deliveries: every event, and the deliveries with one."""

    opens: int = 0
    unique_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0


@dataclass(slots=True)
class DeliveryRecord:
    id: str  # deterministic: one per (event, user, channel), so retries never duplicate
    event_id: str
    event_type: str
    user_id: str
    channel: Channel
    created_at: datetime
    updated_at: datetime
    status: DeliveryStatus = DeliveryStatus.QUEUED
    campaign_id: str | None = None
    template_slug: str | None = None
    locale: str | None = None
    subject: str | None = None  # rendered, once sending
    title: str | None = None
    body: str | None = None  # kept for in-app items (the inbox); None for other channels
    data: dict[str, Any] = field(default_factory=dict)
    timeline: list[StatusChange] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    provider_message_id: str | None = None
    read_at: datetime | None = None
    archived_at: datetime | None = None
    engagements: list[Engagement] = field(default_factory=list)  # opens and clicks, in order
    tenant_id: str | None = None  # the event's tenant (backend.services.tenants)

    def evolved(self, **changes: Any) -> DeliveryRecord:
        """A copy with ``changes``: ``dataclasses.replace`` at a third of its cost (it runs
        twice per delivery on the send path: claimed, then sent)."""
        copy = DeliveryRecord(*_record_values(self))
        for name, value in changes.items():
            setattr(copy, name, value)  # slots: an unknown name raises AttributeError
        return copy


_record_values = attrgetter(*(f.name for f in fields(DeliveryRecord)))


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    user_id: str | None = None
    # Only this tenant's deliveries (a caller bound to a tenant); None: every delivery.
    tenant_id: str | None = None
    event_id: str | None = None
    campaign_id: str | None = None
    channel: Channel | None = None
    status: DeliveryStatus | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    # With ``event_id``: more event ids whose deliveries count as the event's (the send
    # steps of its workflow runs dispatch under ids of their own).
    event_ids: tuple[str, ...] = ()

    @property
    def all_event_ids(self) -> tuple[str, ...]:
        if self.event_id is None:
            return ()
        return (self.event_id, *(i for i in self.event_ids if i != self.event_id))


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[DeliveryRecord]
    end_cursor: str | None
    has_next_page: bool


def history_cursor(record: DeliveryRecord) -> str:
    """The cursor of a record's place in newest-first order; every store uses this encoding,
    so any record's cursor can continue a page (``after``)."""
    raw = f"{record.created_at.isoformat()}|{record.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_history_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) from :func:`history_cursor`; ValidationError(field="after") if bad."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, sep, delivery_id = raw.partition("|")
        if not sep or not delivery_id:
            raise ValueError(raw)
        created_at = datetime.fromisoformat(at)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationError("The cursor is not valid", field="after") from exc
    if created_at.tzinfo is None:
        raise ValidationError("The cursor is not valid", field="after")
    return created_at, delivery_id


def check_first(first: int) -> int:
    """``first`` when it asks for at least one record. The upper bound is the caller's
    (GraphQL pages are capped there); internal readers such as exports may ask for more."""
    if first < 1:
        raise ValidationError("'first' must be at least 1", field="first")
    return first


def page_of(rows: Sequence[DeliveryRecord], first: int) -> HistoryPage:
    """The page for ``rows`` read in order with a limit of ``first + 1``: the extra row only
    says that another page follows."""
    items = list(rows[:first])
    end_cursor = history_cursor(items[-1]) if items else None
    return HistoryPage(items=items, end_cursor=end_cursor, has_next_page=len(rows) > first)


class HistoryStore(Protocol):
    """Every store behaves the same; the contract tests in tests/history/ hold them to it.

    Ordering for :meth:`find` is newest first: ``created_at`` descending, then ``id`` descending.
    Cursors are :func:`history_cursor` of the last record of a page (``end_cursor``).

    The stores subclass this protocol: :meth:`get`, :meth:`transition` and :meth:`find` are
    written here once, on the stores' :meth:`get_many`, :meth:`transition_many` and
    :meth:`read_newest_first`.
    """

    async def start(self) -> None:
        """Connect and create indexes (Mongo) — idempotent."""

    async def close(self) -> None: ...

    async def add(self, records: Sequence[DeliveryRecord]) -> int:
        """Insert records whose id is new; existing ids are left untouched. Returns how many
        were inserted. The first timeline entry is the record's status at ``created_at``."""
        ...

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        """The record with this id, or None."""
        found = await self.get_many([delivery_id])
        return found[0] if found else None

    async def get_many(self, delivery_ids: Sequence[str]) -> list[DeliveryRecord]:
        """Records for the ids that exist, in no particular order."""
        ...

    async def transition(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        at: datetime,
        expected: frozenset[DeliveryStatus] | None = None,
        reason: str | None = None,
        attempt: Attempt | None = None,
        rendered: Rendered | None = None,
        provider_message_id: str | None = None,
    ) -> bool:
        """Atomically move a delivery to ``status`` if its current status is in ``expected``
        (any status when None): append a timeline entry (and the attempt, if given), set the
        rendered fields and provider id when given, bump ``updated_at``. Returns False (and
        changes nothing) when the record is missing or its status is not expected."""
        changed = await self.transition_many(
            [delivery_id],
            status,
            at=at,
            expected=expected,
            reason=reason,
            attempt=attempt,
            rendered=None if rendered is None else {delivery_id: rendered},
            provider_message_id=provider_message_id,
        )
        return delivery_id in changed

    async def transition_many(
        self,
        delivery_ids: Sequence[str],
        status: DeliveryStatus,
        *,
        at: datetime,
        expected: frozenset[DeliveryStatus] | None = None,
        reason: str | None = None,
        attempt: Attempt | None = None,
        rendered: dict[str, Rendered] | None = None,
        unchanged_since: dict[str, datetime] | None = None,
        provider_message_id: str | None = None,
    ) -> set[str]:
        """:meth:`transition` for many deliveries at once (one statement where the store
        allows), each checked against ``expected`` on its own; ``rendered`` maps an id to its
        rendered fields. ``unchanged_since`` maps an id to the ``updated_at`` its caller read:
        that delivery changes only if nobody changed it since, which makes taking over a
        delivery left in ``sending`` exclusive. ``provider_message_id`` is set on each
        delivery that changes. Returns the ids that changed."""
        ...

    async def find(
        self, filter: DeliveryFilter, *, first: int, after: str | None = None
    ) -> HistoryPage:
        """A page of records matching every set field of ``filter``, newest first.
        Raises ``backend.errors.ValidationError`` (field ``after``) on a bad cursor."""
        check_first(first)
        position = None if after is None else decode_history_cursor(after)
        return page_of(await self.read_newest_first(filter, after=position, limit=first + 1), first)

    async def read_newest_first(
        self, filter: DeliveryFilter, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[DeliveryRecord]:
        """Up to ``limit`` records matching ``filter`` in :meth:`find`'s order, after the
        position ``after`` = (created_at, id) when given."""
        ...

    async def count_by_status(
        self, filter: DeliveryFilter
    ) -> dict[tuple[Channel, DeliveryStatus], int]:
        """Counts per (channel, status) of the records matching ``filter``."""
        ...

    async def add_engagement(self, delivery_id: str, engagement: Engagement) -> bool:
        """Append an open or click to an email delivery's engagements, leaving its status and
        timeline alone. False (nothing changed) when there is no such email delivery or it
        already holds :data:`MAX_ENGAGEMENTS`."""
        ...

    async def engagement_counts(self, filter: DeliveryFilter) -> EngagementCounts:
        """Opens and clicks of the records matching ``filter``."""
        ...

    async def scrub_user(self, user_id: str, hashed_id: str) -> int:
        """Forget a user in the history: each of their deliveries keeps its id, event, type,
        channel, status, template, locale, campaign and times, for counts; its user id becomes
        ``hashed_id``, and what could name the user goes (rendered subject, title and body,
        data, the provider's message id, the reasons and errors of its timeline and attempts,
        which may quote an address, and the URLs of its clicks). Returns how many deliveries
        were scrubbed; a second call finds none (idempotent)."""
        ...

    async def purge_older_than(self, cutoff: datetime, *, batch_size: int = 5000) -> int:
        """Delete the deliveries created before ``cutoff`` (retention), at most ``batch_size``
        per statement. Returns how many."""
        ...

    async def delivery_stats(self, query: StatsQuery) -> list[StatsRow]:
        """Counts of the deliveries created in ``[query.since, query.until)``: one row per
        non-empty group of (bucket of ``query.bucket`` aligned on ``since``, when set) x (the
        value of each dimension of ``query.group_by``), in no particular order."""
        ...


class StatsDimension(StrEnum):
    """What delivery counts can be grouped by."""

    CHANNEL = "channel"
    STATUS = "status"  # the delivery's current status
    PROVIDER = "provider"  # the provider of its last attempt; None before any attempt
    EVENT_TYPE = "event_type"
    CAMPAIGN = "campaign_id"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    since: datetime
    until: datetime
    bucket: timedelta | None = None  # None: one total per group
    group_by: tuple[StatsDimension, ...] = ()


@dataclass(frozen=True, slots=True)
class StatsRow:
    bucket_start: datetime | None  # None when the query has no bucket
    keys: tuple[str | None, ...]  # the group's value of each ``group_by`` dimension, in order
    count: int
