"""Herald's typed client for services. The operations and their types are generated from
Herald's schema (``herald_client.aio`` for asyncio, ``herald_client.sync`` for blocking code);
:class:`HeraldClient` and :class:`HeraldSyncClient` add authentication, retries and
idempotency keys."""

from herald_client.clients import HeraldClient, HeraldSyncClient

__all__ = ["HeraldClient", "HeraldSyncClient"]
