"""The per-operation context shared by HTTP and WebSocket transports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from strawberry.fastapi import BaseContext

from backend.auth import Principal, Role, Scope, TokenVerifier, require_roles
from backend.config import Settings
from backend.errors import ForbiddenError, HeraldError, UnauthenticatedError

API_KEY_PREFIX = "hk_"

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from backend.broker import Broker
    from backend.db.history.base import HistoryStore
    from backend.realtime import LiveHub
    from backend.services.api_keys import ApiKeyVerifier
    from backend.services.campaigns import CampaignTrigger, RunPublisher
    from backend.services.deliveries import DeliveryQueue
    from backend.services.events import Ingestion
    from backend.services.live import RedisLivePublisher, SequenceReader
    from backend.services.webhooks import WebhookNotifier


@dataclass(eq=False)
class Clients:
    """The clients the app's lifespan opens once per process and closes at shutdown."""

    redis: Redis
    broker: Broker
    history: HistoryStore
    live_hub: LiveHub
    # One per process: it remembers a Redis that refused its publish script.
    live: RedisLivePublisher
    inbox_sequences: SequenceReader
    queue: DeliveryQueue
    ingestion: Ingestion
    campaign_trigger: CampaignTrigger
    run_publisher: RunPublisher
    api_keys: ApiKeyVerifier
    webhooks: WebhookNotifier  # opens and clicks, for the endpoints that ask for them


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

    async def authenticate(self, *, api_key: str | None = None) -> None:
        """Find the caller before the operation runs: a JWT (whose JWKS key may need fetching)
        or an API key (``Bearer hk_...`` or ``api_key``, looked up in PostgreSQL through a
        per-process cache). A failure is kept and raised by :meth:`principal`, so operations
        that need no caller still run."""
        if self._checked:
            return
        self._checked = True
        try:
            credential = api_key.strip() if api_key else None
            if credential is None:
                credential = _bearer(self.authorization)
            if credential.startswith(API_KEY_PREFIX):
                self._principal = await self.services.clients.api_keys.verify(credential)
            else:
                self._principal = await self.services.verifier.authenticate(credential)
        except HeraldError as exc:
            self._auth_error = exc

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

    def require(
        self, roles: frozenset[Role], scope: Scope | None = None, *, tenant_scoped: bool = False
    ) -> Principal:
        """The caller, when it holds one of ``roles``, or (an API key) the ``scope``.

        A caller bound to a tenant passes only where the operation is ``tenant_scoped`` (its
        reads and writes filtered by the caller's tenant, backend.services.tenants): every
        other role-guarded operation reaches the whole install's data."""
        principal = self.principal()
        if principal.tenant_id is not None and not tenant_scoped:
            raise ForbiddenError("This operation is not available to a caller bound to a tenant")
        if scope is not None and scope in principal.scopes:
            return principal
        return require_roles(principal, roles)

    async def read_session(self) -> AsyncSession:
        """A session for reads, shared by the operation's query fields, closed by the transport."""
        if self._session is None:
            self._session = self.services.sessionmaker()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise UnauthenticatedError(
            "Authentication required: send 'Authorization: Bearer <jwt or API key>'"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("The Authorization header must be 'Bearer <jwt>'")
    return token.strip()
