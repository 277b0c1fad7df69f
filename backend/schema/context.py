"""The per-operation context shared by HTTP and WebSocket transports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from strawberry.fastapi import BaseContext

from backend.auth import Principal, Role, TokenVerifier, require_roles
from backend.config import Settings
from backend.errors import HeraldError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from backend.broker import Broker
    from backend.db.history.base import HistoryStore
    from backend.realtime import LiveHub
    from backend.services.campaigns import CampaignTrigger, RunPublisher
    from backend.services.deliveries import DeliveryQueue
    from backend.services.events import Ingestion
    from backend.services.live import SequenceReader


@dataclass(eq=False)
class Clients:
    """The clients the app's lifespan opens once per process and closes at shutdown."""

    redis: Redis
    broker: Broker
    history: HistoryStore
    live_hub: LiveHub
    inbox_sequences: SequenceReader
    queue: DeliveryQueue
    ingestion: Ingestion
    campaign_trigger: CampaignTrigger
    run_publisher: RunPublisher


@dataclass(eq=False)
class Services:
    """What every operation reaches: settings, the token verifier, the database, and (once the
    lifespan has opened them) the process's clients."""

    settings: Settings
    verifier: TokenVerifier
    sessionmaker: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    opened: Clients | None = None

    @property
    def clients(self) -> Clients:
        if self.opened is None:
            raise RuntimeError("the app's clients are not open: is the lifespan running?")
        return self.opened


@dataclass
class Context(BaseContext):
    services: Services
    authorization: str | None = None
    _principal: Principal | None = None
    _auth_error: HeraldError | None = None
    _checked: bool = False
    connection_params: dict[str, Any] | None = None
    _session: AsyncSession | None = None
    # GraphQL resolves sibling fields concurrently; one AsyncSession must not be shared that way.
    read_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def principal(self) -> Principal:
        """The caller, from the bearer token. Raises a typed error when the token is not valid."""
        if not self._checked:
            self._checked = True
            try:
                self._principal = self.services.verifier.verify_header(self.authorization)
            except HeraldError as exc:
                self._auth_error = exc
        if self._auth_error is not None:
            raise self._auth_error
        assert self._principal is not None
        return self._principal

    def require(self, roles: frozenset[Role]) -> Principal:
        return require_roles(self.principal(), roles)

    async def read_session(self) -> AsyncSession:
        """A session for reads, shared by the operation's query fields, closed by the transport."""
        if self._session is None:
            self._session = self.services.sessionmaker()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
