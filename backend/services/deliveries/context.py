"""What dispatch and sending run with: one ``DeliveryContext`` per worker process, and the
queue that hands batches and dispatch parts on to other tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.broker import Broker
from backend.channels import Channel
from backend.channels.base import ChannelSender
from backend.config import Settings
from backend.db.history.base import HistoryStore
from backend.db.models import Template
from backend.db.repositories.templates import TemplateRepository
from backend.frameworks.sqlalchemy_sessions import sessionmaker_bind
from backend.services import task_messages
from backend.services.envelope import Envelope
from backend.services.expiring import ExpiringCache
from backend.services.limits import Limits
from backend.services.live import RedisLivePublisher
from backend.services.task_messages import TaskMessage
from backend.services.tenants import TenantCache
from backend.services.users import UserProfile


class DeliveryQueue(Protocol):
    async def enqueue_send(self, message: TaskMessage) -> None:
        """Enqueue a channel batch built by :func:`task_messages.send`."""

    async def enqueue_dispatch(self, envelope: Envelope) -> None: ...


class BrokerDeliveryQueue:
    """Enqueues channel batches as Celery task messages through the confirming publisher."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def enqueue_send(self, message: TaskMessage) -> None:
        await message.publish(self.broker)

    async def enqueue_dispatch(self, envelope: Envelope) -> None:
        await task_messages.dispatch(envelope).publish(self.broker)


class TemplateCache:
    """Templates by slug (and tenant) for a few seconds: a worker sends the same template in
    batch after batch, and an edit reaches deliveries within ``ttl`` seconds. One load per
    key at a time: when an entry expires, the batches that need it meanwhile wait for that
    one query (each loading it itself took a connection each, tens of them at once)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self._entries: ExpiringCache[tuple[str, str | None], Template | None] = ExpiringCache(ttl)

    async def get(
        self, session: AsyncSession, slug: str, tenant_id: str | None = None
    ) -> Template | None:
        """The template sent under ``slug``: for ``tenant_id``, its override, else the
        shared one."""

        async def load() -> Template | None:
            return await TemplateRepository(session).effective(slug, tenant_id)

        return await self._entries.get((slug, tenant_id), load)


class UserLookup(Protocol):
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]: ...


class StatusWebhooks(Protocol):
    async def notify(self, updates: list[dict[str, Any]]) -> None:
        """Hand status changes to the registered webhook endpoints (backend.services.webhooks)."""


@dataclass
class DeliveryContext:
    """What dispatch and sending need; one per worker process."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    history: HistoryStore
    queue: DeliveryQueue
    users: UserLookup
    senders: dict[Channel, ChannelSender] = field(default_factory=dict)
    live: RedisLivePublisher | None = None
    templates: TemplateCache = field(default_factory=lambda: TemplateCache())
    tenants: TenantCache = field(default_factory=lambda: TenantCache())
    limits: Limits | None = None
    webhooks: StatusWebhooks | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The sessionmaker's engine: hot-path statements use its driver connections."""
        return sessionmaker_bind(self.sessionmaker)


def chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    """``items`` in consecutive slices of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
