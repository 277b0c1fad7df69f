"""Applying bounces and complaints to deliveries and to the suppression list."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.broker import Broker
from backend.channels import Channel
from backend.db.history.base import DeliveryStatus, HistoryStore, StatusChange
from backend.errors import ValidationError
from backend.observability import metrics
from backend.services import suppressions
from backend.services.deliveries.context import StatusWebhooks
from backend.services.deliveries.records import delivery_update
from backend.services.live import RedisLivePublisher
from backend.services.suppressions import SuppressionKind
from backend.services.webhooks import BrokerWebhookQueue, WebhookNotifier

log = logging.getLogger(__name__)

# What Herald puts on outgoing mail (``backend.channels.email``) and providers echo back.
DELIVERY_ID_KEY = "herald_delivery_id"
_MESSAGE_ID = re.compile(r"<?herald\.([A-Za-z0-9._-]{1,64})@[^>]*>?")
_VERP = re.compile(r"^[A-Za-z0-9._-]+\+([A-Za-z0-9._-]{1,64})@", re.ASCII)
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class FeedbackKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"  # the address does not take mail: suppressed
    SOFT_BOUNCE = "soft_bounce"  # a temporary refusal: recorded only
    COMPLAINT = "complaint"  # the recipient reported the message as spam: suppressed


@dataclass(frozen=True, slots=True)
class Feedback:
    """One provider report about one recipient of one message."""

    kind: FeedbackKind
    address: str
    provider: str
    reason: str
    delivery_id: str | None = None
    # Whether to suppress the address when no delivery matches: yes for a provider whose
    # signature proved the report; no for an unauthenticated DSN, which could be forged.
    trusted: bool = True


@dataclass
class FeedbackSummary:
    received: int = 0
    matched: int = 0  # deliveries that changed
    suppressed: int = 0  # addresses newly suppressed

    def to_json(self) -> dict[str, int]:
        return {"received": self.received, "matched": self.matched, "suppressed": self.suppressed}


def message_id_token(value: str | None) -> str | None:
    """What follows ``herald.`` in a Message-ID Herald made: ``<delivery id>.<tag>`` (before
    the tag existed, the delivery id alone)."""
    if not value:
        return None
    found = _MESSAGE_ID.search(value.strip())
    return found.group(1) if found else None


def delivery_id_from_message_id(value: str | None) -> str | None:
    """The delivery id in a Message-ID Herald made, its tag not checked: for reports whose
    sender's signature vouches for them (a provider's webhook)."""
    token = message_id_token(value)
    if token is None:
        return None
    return token.rpartition(".")[0] or token


def delivery_id_from_verp(address: str | None) -> str | None:
    """What a VERP envelope sender names (``bounces+<delivery id>.<tag>@domain``): the
    ``<delivery id>.<tag>`` part, to be checked (``channels.email.verified_delivery_id``)."""
    if not address:
        return None
    found = _VERP.match(address.strip().strip("<>"))
    return found.group(1) if found else None


def clean_delivery_id(value: Any) -> str | None:
    """A delivery id taken from a provider's metadata, if it looks like one."""
    if isinstance(value, str) and _DELIVERY_ID.match(value.strip()):
        return value.strip()
    return None


_STATUS = {
    FeedbackKind.HARD_BOUNCE: DeliveryStatus.BOUNCED,
    FeedbackKind.COMPLAINT: DeliveryStatus.COMPLAINED,
    FeedbackKind.SOFT_BOUNCE: DeliveryStatus.SENT,
}
_LABEL = {
    FeedbackKind.HARD_BOUNCE: "hard bounce",
    FeedbackKind.SOFT_BOUNCE: "soft bounce",
    FeedbackKind.COMPLAINT: "spam complaint",
}


def describe(feedback: Feedback) -> str:
    """The timeline reason: what happened, who said so, and the provider's own words."""
    reason = " ".join(feedback.reason.split())[:500]
    text = f"{_LABEL[feedback.kind]} reported by {feedback.provider} for {feedback.address}"
    return f"{text}: {reason}" if reason else text


async def apply_to_history(
    history: HistoryStore, feedback: Sequence[Feedback], *, at: datetime
) -> tuple[list[dict[str, Any]], set[int]]:
    """Move each matched email delivery: ``sent`` -> ``bounced`` / ``complained``, or a
    ``sent`` timeline entry for a soft bounce (not announced; not again for the same report).
    Returns the status changes to announce and the positions in ``feedback`` that matched a
    delivery."""
    ids = list({f.delivery_id for f in feedback if f.delivery_id})
    records = {r.id: r for r in await history.get_many(ids)} if ids else {}
    updates: list[dict[str, Any]] = []
    matched: set[int] = set()
    for position, item in enumerate(feedback):
        record = records.get(item.delivery_id or "")
        if record is None or record.channel is not Channel.EMAIL:
            continue
        status, reason = _STATUS[item.kind], describe(item)
        if item.kind is FeedbackKind.SOFT_BOUNCE and any(
            c.reason == reason for c in record.timeline
        ):
            continue  # the same report again (a provider's retry): already in the timeline
        changed = await history.transition(
            record.id,
            status,
            at=at,
            expected=frozenset({DeliveryStatus.SENT}),
            reason=reason,
        )
        if not changed:
            continue  # already bounced or complained: a provider's retry, or a second report
        matched.add(position)
        # Two reports for one delivery in one batch see each other's timeline entry.
        record.timeline.append(StatusChange(status, at, reason))
        record.status = status
        if item.kind is not FeedbackKind.SOFT_BOUNCE:
            updates.append(
                delivery_update(record, status, at, reason, sequence=len(record.timeline))
            )
            metrics.record_delivery(Channel.EMAIL.value, status.value)
    return updates, matched


async def suppress_addresses(
    session: AsyncSession, feedback: Sequence[Feedback], matched: set[int]
) -> int:
    """Suppress the addresses of hard bounces and complaints (an unauthenticated report only
    when it matched a delivery). Returns how many were newly suppressed."""
    added = 0
    for position, item in enumerate(feedback):
        if item.kind is FeedbackKind.SOFT_BOUNCE or not item.address:
            continue
        if not item.trusted and position not in matched:
            continue
        kind = (
            SuppressionKind.COMPLAINT
            if item.kind is FeedbackKind.COMPLAINT
            else SuppressionKind.HARD_BOUNCE
        )
        if await suppressions.suppress(
            session,
            address=item.address,
            kind=kind,
            provider=item.provider,
            reason=describe(item),
            delivery_id=item.delivery_id,
        ):
            added += 1
    return added


def load_json(body: bytes, what: str, shape: type[dict[str, Any]] | type[list[Any]]) -> Any:
    """A provider's JSON body, which must be an object (``dict``) or an array (``list``);
    ValidationError naming ``what`` otherwise ("The body is not <what> (not JSON)")."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"The body is not {what} (not JSON)") from exc
    if not isinstance(value, shape):
        name = "a JSON object" if shape is dict else "a JSON array"
        raise ValidationError(f"The body is not {what} (not {name})")
    return value


@dataclass
class FeedbackRecorder:
    """Applies feedback with the clients of one process (the API, or ``herald bounces``)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    history: HistoryStore
    live: RedisLivePublisher | None = None
    webhooks: StatusWebhooks | None = None

    @classmethod
    def announcing(
        cls,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        history: HistoryStore,
        redis: Redis,
        broker: Broker,
        webhook_cache_seconds: float,
    ) -> FeedbackRecorder:
        """A recorder that announces changes on the live feed and to status webhooks."""
        return cls(
            sessionmaker=sessionmaker,
            history=history,
            live=RedisLivePublisher(redis),
            webhooks=WebhookNotifier(
                sessionmaker=sessionmaker,
                queue=BrokerWebhookQueue(broker),
                cache_seconds=webhook_cache_seconds,
            ),
        )

    async def record(self, feedback: Sequence[Feedback]) -> FeedbackSummary:
        """Apply ``feedback``: the history first, then the suppressions in one transaction,
        then the announcements. A provider retries a report that failed half way: the
        history part is then a no-op and the suppression is added."""
        summary = FeedbackSummary(received=len(feedback))
        if not feedback:
            return summary
        updates, matched = await apply_to_history(self.history, feedback, at=datetime.now(UTC))
        summary.matched = len(matched)
        async with self.sessionmaker() as session:
            summary.suppressed = await suppress_addresses(session, feedback, matched)
            await session.commit()
        if updates:
            if self.live is not None:
                await self.live.publish_delivery_updates(updates)
            if self.webhooks is not None:
                await self.webhooks.notify(updates)
        log.info(
            "email feedback: %d received, %d deliveries changed, %d addresses suppressed",
            summary.received,
            summary.matched,
            summary.suppressed,
        )
        return summary
