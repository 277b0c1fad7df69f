"""Delivery history as managers read it: filtered pages of the history store, newest first."""

from __future__ import annotations

from backend.db.history.base import DeliveryFilter, DeliveryRecord, HistoryStore, history_cursor
from backend.services.pagination import Page, check_page_size

__all__ = ["DeliveryFilter", "DeliveryRecord", "list_deliveries"]


async def list_deliveries(
    history: HistoryStore, *, filter: DeliveryFilter, first: int, after: str | None
) -> Page[DeliveryRecord]:
    """A page of deliveries matching ``filter``, newest first, each with its cursor."""
    page = await history.find(filter, first=check_page_size(first), after=after)
    return Page(
        items=[(history_cursor(record), record) for record in page.items],
        has_next_page=page.has_next_page,
    )
