"""Delivery records: their ids, the history store as a batch sees it, and the status changes
announced to the live delivery feed and webhooks."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from backend.channels import Channel
from backend.db.history.base import (
    Attempt,
    DeliveryRecord,
    DeliveryStatus,
    HistoryStore,
    Rendered,
    StatusChange,
)
from backend.observability import metrics
from backend.services.deliveries.context import DeliveryContext
from backend.services.webhooks import delivery_fields

NAMESPACE = uuid.UUID("6f1d3c2a-8f5e-4b7a-9c1d-2e3f4a5b6c7d")
_NAMESPACE_BYTES = NAMESPACE.bytes


def delivery_id(event_id: str, user_id: str, channel: Channel | str) -> str:
    """The one id of (event, user, channel): a re-run dispatch produces the same ids.

    ``uuid.uuid5`` of the name, computed without building a UUID object: campaign pages make a
    thousand at a time, and ``uuid5()`` and ``str()`` were 7% of a worker's CPU there."""
    kind = channel.value if isinstance(channel, Channel) else Channel(channel).value
    name = f"{event_id}/{user_id}/{kind}"
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])  # noqa: S324
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RecordingHistory:
    """Passes calls to the history store and remembers every successful status change, so a
    batch can announce them on the live delivery feed in one message.

    ``unstored`` records (in-app, sent inline) are not in the store yet: a batch change to
    them is applied here and the records inserted with it, once; any other change stores them
    first, as they are."""

    def __init__(
        self,
        history: HistoryStore,
        records: dict[str, DeliveryRecord],
        unstored: Collection[str] = (),
    ) -> None:
        self._history = history
        self._records = records
        self._unstored = set(unstored)
        self.updates: list[dict[str, Any]] = []
        self._positions: dict[str, int] = {}  # timeline length after this batch's changes

    def _record(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        at: datetime,
        reason: str | None,
        *,
        announced: bool = True,
    ) -> DeliveryRecord | None:
        """Remember the change; the record when it is announced (and so to be counted)."""
        record = self._records.get(delivery_id)
        if record is None:
            return None
        # The change's place in the stored timeline (``add`` stores at least one entry).
        sequence = self._positions.get(delivery_id, max(len(record.timeline), 1)) + 1
        self._positions[delivery_id] = sequence
        if not announced:
            return None
        self.updates.append(delivery_update(record, status, at, reason, sequence=sequence))
        return record

    async def _store(self, delivery_ids: Collection[str]) -> None:
        waiting = [self._records[i] for i in delivery_ids if i in self._unstored]
        if waiting:
            await self._history.add(waiting)
            self._unstored.difference_update(r.id for r in waiting)

    async def transition_many(
        self, delivery_ids: Sequence[str], status: DeliveryStatus, *, at: datetime, **kwargs: Any
    ) -> set[str]:
        fresh = [i for i in delivery_ids if i in self._unstored]
        changed: set[str] = set()
        if fresh:
            reason = kwargs.get("reason")
            attempt: Attempt | None = kwargs.get("attempt")
            rendered: dict[str, Rendered] = kwargs.get("rendered") or {}
            done = [
                _applied(self._records[i], status, at, reason, attempt, rendered.get(i))
                for i in fresh
            ]
            # Inserted as they end up. One that exists already was stored by another run of
            # the same event: moved on as the store's own if it is still pending there.
            inserted = await self._history.add(done)
            self._unstored.difference_update(fresh)
            if inserted < len(done):
                pending = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING})
                await self._history.transition_many(
                    fresh, status, at=at, **{**kwargs, "expected": pending}
                )
            changed.update(fresh)
        rest = [i for i in delivery_ids if i not in changed]
        if rest:
            changed |= await self._history.transition_many(rest, status, at=at, **kwargs)
        counted: Counter[str] = Counter()
        for delivery_id in delivery_ids:
            if delivery_id in changed:
                record = self._record(delivery_id, status, at, kwargs.get("reason"))
                if record is not None:
                    counted[record.channel.value] += 1
        for channel_name, count in counted.items():  # once per channel: not once per delivery
            metrics.record_delivery(channel_name, status.value, count)
        return changed

    async def transition(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        at: datetime,
        announced: bool = True,
        **kwargs: Any,
    ) -> bool:
        """``announced=False``: a timeline entry nobody is told about (a provider that failed
        over), which still takes its place in the sequence of the delivery's changes."""
        await self._store([delivery_id])
        changed = await self._history.transition(delivery_id, status, at=at, **kwargs)
        if changed:
            reason = kwargs.get("reason")
            record = self._record(delivery_id, status, at, reason, announced=announced)
            if record is not None:
                metrics.record_delivery(record.channel.value, status.value)
        return changed


def _applied(
    record: DeliveryRecord,
    status: DeliveryStatus,
    at: datetime,
    reason: str | None,
    attempt: Attempt | None,
    rendered: Rendered | None,
) -> DeliveryRecord:
    """The record after a status change, as the store's transition would leave it."""
    shown = rendered or Rendered()
    return record.evolved(
        status=status,
        updated_at=at,
        timeline=[*record.timeline, StatusChange(status, at, reason)],
        attempts=[*record.attempts, attempt] if attempt is not None else record.attempts,
        subject=shown.subject if shown.subject is not None else record.subject,
        title=shown.title if shown.title is not None else record.title,
        body=shown.body if shown.body is not None else record.body,
        locale=shown.locale if shown.locale is not None else record.locale,
    )


def delivery_update(
    record: DeliveryRecord,
    status: DeliveryStatus,
    at: datetime,
    reason: str | None,
    *,
    sequence: int,
) -> dict[str, Any]:
    """One entry of the live delivery feed. ``sequence``: the change's 1-based position in the
    delivery's timeline, which orders a delivery's changes however they travel."""
    return {
        **delivery_fields(record),
        "status": status.value,
        "sequence": sequence,
        "at": at.isoformat(),
        "reason": reason,
        **({"tenant_id": record.tenant_id} if record.tenant_id is not None else {}),
    }


async def announce(ctx: DeliveryContext, updates: list[dict[str, Any]]) -> None:
    """Tell the world about status changes: the live delivery feed (every change of a batch
    in one message). The one place status changes leave the delivery path."""
    if not updates:
        return
    if ctx.live is not None:
        await ctx.live.publish_delivery_updates(updates)
    if ctx.webhooks is not None:
        await ctx.webhooks.notify(updates)
