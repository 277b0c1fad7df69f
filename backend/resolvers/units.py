"""Units of work for resolvers: authorise, run one service call, commit once, shape errors.

Each root mutation field is its own unit of work: it commits once when the service call
succeeds and rolls back when it raises, so one failing field never undoes another that ran
before it in the same document. Query fields share one read session per operation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import strawberry
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal, Role
from backend.errors import ConflictError, HeraldError, UnavailableError
from backend.schema.context import Context
from backend.schema.errors import Error, error_type_for

T = TypeVar("T")
log = logging.getLogger(__name__)

_DOWN = (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError)


def _unavailable(exc: BaseException) -> UnavailableError:
    log.warning("database unavailable: %s", exc)
    return UnavailableError("The database is unavailable; try again shortly")


class _LazySession:
    """An AsyncSession made on first use: most sendEvent calls never touch PostgreSQL (rules
    and templates come from a cache), and making and closing a session is a measurable part
    of that hot path."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory
        self.session: AsyncSession | None = None

    def __getattr__(self, name: str) -> Any:
        if self.session is None:
            self.session = self._factory()
        return getattr(self.session, name)


async def mutate(
    info: strawberry.Info[Context, Any],
    roles: frozenset[Role] | None,
    work: Callable[[AsyncSession, Principal], Awaitable[T]],
) -> T | Error:
    """Run ``work`` in its own transaction for a caller holding one of ``roles`` (any
    authenticated caller when ``None``)."""
    ctx = info.context
    try:
        principal = ctx.principal() if roles is None else ctx.require(roles)
        lazy = _LazySession(ctx.services.sessionmaker)
        try:
            try:
                result = await work(cast(AsyncSession, lazy), principal)
                if lazy.session is not None and lazy.session.in_transaction():
                    await lazy.session.commit()
            except BaseException:
                if lazy.session is not None:
                    await lazy.session.rollback()
                raise
            finally:
                if lazy.session is not None:
                    await lazy.session.close()
        except sa_exc.IntegrityError as exc:
            raise ConflictError("The change conflicts with another one; reload and retry") from exc
        except _DOWN as exc:
            raise _unavailable(exc) from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise _unavailable(exc) from exc
            raise
        return result
    except HeraldError as exc:
        return error_type_for(exc)


async def read(
    info: strawberry.Info[Context, Any],
    roles: frozenset[Role] | None,
    work: Callable[[AsyncSession, Principal], Awaitable[T]],
) -> T:
    """Run a read for a caller holding one of ``roles`` (any authenticated caller if ``None``).

    Failures raise Herald errors, which reach the client with ``extensions.code``.
    """
    ctx = info.context
    principal = ctx.principal() if roles is None else ctx.require(roles)
    async with ctx.read_lock:
        session = await ctx.read_session()
        try:
            return await work(session, principal)
        except _DOWN as exc:
            raise _unavailable(exc) from exc
