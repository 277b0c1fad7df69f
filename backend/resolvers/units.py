"""Units of work for resolvers: authorise, run one service call, commit once, shape errors.

Each root mutation field is its own unit of work: it commits once when the service call
succeeds and rolls back when it raises, so one failing field never undoes another that ran
before it in the same document. Query fields share one read session per operation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

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
        try:
            async with ctx.services.sessionmaker() as session:
                try:
                    result = await work(session, principal)
                    # Ingestion often never touches PostgreSQL; skip an empty commit.
                    if session.in_transaction():
                        await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
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
