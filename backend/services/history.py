"""Delivery history as managers read it: filtered pages of the history store, newest first."""

from __future__ import annotations

import dataclasses

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.db.history.base import DeliveryFilter, DeliveryRecord, HistoryStore, history_cursor
from backend.services import tenants, workflows
from backend.services.pagination import Page, check_page_size

__all__ = ["DeliveryFilter", "DeliveryRecord", "list_deliveries", "scoped", "with_workflow_steps"]


def scoped(filter: DeliveryFilter, actor: Principal) -> DeliveryFilter:
    """``filter`` as ``actor`` may read: a caller bound to a tenant, its tenant's deliveries
    only (naming another tenant is FORBIDDEN)."""
    tenant_id = tenants.named_tenant(actor, filter.tenant_id, field="filter.tenantId")
    return (
        filter
        if tenant_id == filter.tenant_id
        else dataclasses.replace(filter, tenant_id=tenant_id)
    )


async def with_workflow_steps(session: AsyncSession, filter: DeliveryFilter) -> DeliveryFilter:
    """``filter`` by an event id widened to the deliveries its workflow runs made: a run's
    send step dispatches under an event id of its own (``workflows.step_event_id``)."""
    if filter.event_id is None:
        return filter
    steps = await workflows.step_event_ids(session, event_id=filter.event_id)
    if not steps:
        return filter
    return dataclasses.replace(filter, event_ids=tuple(steps))


async def list_deliveries(
    session: AsyncSession,
    history: HistoryStore,
    *,
    filter: DeliveryFilter,
    first: int,
    after: str | None,
) -> Page[DeliveryRecord]:
    """A page of deliveries matching ``filter``, newest first, each with its cursor; by an
    event id, those its workflow runs made included."""
    filter = await with_workflow_steps(session, filter)
    page = await history.find(filter, first=check_page_size(first), after=after)
    return Page(
        items=[(history_cursor(record), record) for record in page.items],
        has_next_page=page.has_next_page,
    )
