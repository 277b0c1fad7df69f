"""The email suppression list: addresses that bounced for good or complained.

Email to a suppressed address is skipped at send time (``deliveries.sending``), never retried
nor failed over to another relay; an admin or manager removes an address to send to it again.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import EmailSuppression
from backend.db.repositories.suppressions import SuppressionRepository
from backend.errors import NotFoundError, ValidationError
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_key_cursor,
    encode_time_cursor,
)


class SuppressionKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"


def normalise_address(address: str) -> str:
    """The form addresses are kept and compared in: trimmed, lower-cased."""
    return address.strip().lower()


async def suppress(
    session: AsyncSession,
    *,
    address: str,
    kind: SuppressionKind,
    provider: str,
    reason: str,
    delivery_id: str | None,
) -> bool:
    """Put ``address`` on the list (the first report is kept). Whether it was added."""
    return await SuppressionRepository(session).add(
        address=normalise_address(address),
        kind=kind.value,
        provider=provider[:40],
        reason=reason,
        delivery_id=delivery_id,
    )


async def suppressed(
    session: AsyncSession, *, addresses: Collection[str]
) -> dict[str, EmailSuppression]:
    """Which of ``addresses`` are suppressed, by normalised address."""
    return await SuppressionRepository(session).suppressed(
        {normalise_address(a) for a in addresses if a}
    )


def _cursor(row: EmailSuppression) -> str:
    return encode_time_cursor("suppression", row.created_at, row.address)


async def list_suppressions(
    session: AsyncSession,
    *,
    address_contains: str | None = None,
    kind: SuppressionKind | None = None,
    first: int,
    after: str | None,
) -> Page[EmailSuppression]:
    """Suppressed addresses, newest first, optionally those containing ``address_contains``
    or of one ``kind``."""
    limit = check_page_size(first)
    position = decode_time_key_cursor("suppression", after)
    if address_contains is not None and len(address_contains) > 320:
        raise ValidationError("'addressContains' is too long", field="addressContains")
    rows = await SuppressionRepository(session).page(
        address_contains=(address_contains or "").strip() or None,
        kind=kind.value if kind is not None else None,
        after=position,
        limit=limit + 1,
    )
    return Page(items=[(_cursor(r), r) for r in rows[:limit]], has_next_page=len(rows) > limit)


async def remove_suppression(session: AsyncSession, *, address: str) -> str:
    """Take ``address`` off the list so email reaches it again; returns the normalised
    address. NotFoundError when it is not suppressed. (The mutation is audited by the
    resolver's unit of work.)"""
    normalised = normalise_address(address)
    if not normalised or "@" not in normalised:
        raise ValidationError("Give an email address", field="address")
    if not await SuppressionRepository(session).remove(normalised):
        raise NotFoundError(f"{normalised} is not suppressed")
    return normalised
