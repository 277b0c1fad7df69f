"""Queries on webhook endpoints and their delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select

from backend.db.models import WebhookDelivery, WebhookEndpoint
from backend.db.repositories.base import RowRepository


class WebhookEndpointRepository(RowRepository[WebhookEndpoint]):
    refresh_after_add = True

    async def get(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        return await self.session.get(WebhookEndpoint, endpoint_id)

    async def all(self) -> list[WebhookEndpoint]:
        stmt = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        return list((await self.session.execute(stmt)).scalars())

    async def active(self) -> list[WebhookEndpoint]:
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, endpoint_id: uuid.UUID) -> bool:
        stmt = delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]


class WebhookDeliveryRepository(RowRepository[WebhookDelivery]):
    async def page(
        self,
        *,
        endpoint_id: uuid.UUID,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[WebhookDelivery]:
        """Newest first; ``after`` is the (created_at, id) of the last row of the previous page."""
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        )
        if after is not None:
            created_at, last_id = after
            stmt = stmt.where(
                (WebhookDelivery.created_at < created_at)
                | ((WebhookDelivery.created_at == created_at) & (WebhookDelivery.id < last_id))
            )
        return list((await self.session.execute(stmt.limit(limit))).scalars())
