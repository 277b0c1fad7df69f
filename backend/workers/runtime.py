"""One event loop per worker process, created at process start with its clients.

Celery does not run ``async def`` tasks: each task calls :func:`run`, which drives the
service coroutine on this process's loop, so connections (PostgreSQL pool, Redis, httpx,
SMTP pool, the confirming publisher) live as long as the process, not one task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.broker import Broker
from backend.channels.registry import build_senders
from backend.config import Settings, get_settings
from backend.db.history.base import HistoryStore
from backend.db.history.factory import create_history_store
from backend.db.session import create_engine, create_sessionmaker
from backend.services.deliveries import BrokerDeliveryQueue, DeliveryContext
from backend.services.limits import Limits
from backend.services.live import RedisLivePublisher
from backend.services.recipients import RecipientStore
from backend.services.users import UserDirectory
from backend.services.webhooks import BrokerWebhookQueue, WebhookNotifier

log = logging.getLogger(__name__)
T = TypeVar("T")


def new_event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """The loop ``HERALD_WORKER_EVENT_LOOP`` names: uvloop (the default; its transports and
    scheduling are C, where a delivery batch spends much of its time) or asyncio's own."""
    if settings.worker_event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = new_event_loop(settings)
        asyncio.set_event_loop(self.loop)
        self.engine: AsyncEngine | None = None
        self.redis: Redis | None = None
        self.http: httpx.AsyncClient | None = None
        self.broker: Broker | None = None
        self.history: HistoryStore | None = None
        self.context: DeliveryContext | None = None
        self.users: UserDirectory | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def start(self) -> None:
        s = self.settings
        self.engine = create_engine(s, pool_size=5)
        sessionmaker = create_sessionmaker(self.engine)
        self.redis = Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=2)
        # The auth service's client: a connection for each request the user directory may have
        # in flight, so none waits in the pool (that wait would count against its timeout).
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(s.auth_timeout_seconds),
            limits=httpx.Limits(
                max_connections=max(50, s.auth_concurrency),
                max_keepalive_connections=s.auth_concurrency,
            ),
        )
        self.broker = Broker.from_settings(s)
        await self.broker.start()
        self.history = create_history_store(s, self.engine)
        await self.history.start()
        self.users = UserDirectory(
            s,
            self.http,
            self.redis,
            store=RecipientStore(sessionmaker, max_age_seconds=s.recipient_max_age_seconds),
        )
        senders = build_senders(s, redis=self.redis)
        for sender in senders.values():
            await sender.start()
        self.context = DeliveryContext(
            settings=s,
            sessionmaker=sessionmaker,
            history=self.history,
            queue=BrokerDeliveryQueue(self.broker),
            users=self.users,
            senders=senders,
            live=RedisLivePublisher(self.redis),
            limits=Limits(self.redis, sessionmaker),
            webhooks=WebhookNotifier(
                sessionmaker=sessionmaker,
                queue=BrokerWebhookQueue(self.broker),
                cache_seconds=s.webhook_cache_seconds,
            ),
        )

    async def close(self) -> None:
        if self.context is not None:
            for sender in self.context.senders.values():
                try:
                    await sender.close()
                except Exception:
                    log.exception("closing a sender failed")
        if self.history is not None:
            await self.history.close()
        if self.broker is not None:
            await self.broker.close()
        if self.http is not None:
            await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()


_runtime: WorkerRuntime | None = None


def get_runtime() -> WorkerRuntime:
    """This process's runtime, started on first use (at process init under Celery)."""
    global _runtime
    if _runtime is None:
        runtime = WorkerRuntime(get_settings())
        runtime.run(runtime.start())
        _runtime = runtime
    return _runtime


def shutdown_runtime() -> None:
    global _runtime
    if _runtime is not None:
        runtime, _runtime = _runtime, None
        runtime.run(runtime.close())
        runtime.loop.close()
