"""Units of work for resolvers: authorise, run one service call, commit once, shape errors.

Each root mutation field is its own unit of work: it commits once when the service call
succeeds and rolls back when it raises, so one failing field never undoes another that ran
before it in the same document. Query fields share one read session per operation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import strawberry
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types.nodes import SelectedField

from backend.auth import Principal, Role, Scope
from backend.errors import ConflictError, HeraldError, UnavailableError, ValidationError
from backend.schema.context import Context
from backend.schema.errors import Error, error_type_for
from backend.services import audit as audit_service

T = TypeVar("T")
log = logging.getLogger(__name__)

_DOWN = (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError)


def _unavailable(exc: BaseException) -> UnavailableError:
    log.warning("database unavailable: %s", exc)
    return UnavailableError("The database is unavailable; try again shortly")


def _rejected_input(exc: sa_exc.DBAPIError) -> ValidationError | None:
    """A ValidationError when PostgreSQL refused a value (SQLSTATE class 22, "data exception":
    a NUL character, text too long, a malformed number or date), else ``None``.

    Such values come from clients (found by fuzzing: a NUL in any string argument), so they
    are bad input, not a failure of Herald; the message names no internals.
    """
    state = _sqlstate(exc)
    if state is not None and state.startswith("22"):
        log.info("input refused by PostgreSQL (SQLSTATE %s)", state)
        return ValidationError(
            "An input value cannot be used: it holds a NUL character, is too long, "
            "or is out of range"
        )
    return None


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


# A deadlock, or a serialization failure: PostgreSQL chose this transaction to undo.
_COLLIDED = ("40P01", "40001")


def _raise_as_herald_error(exc: sa_exc.DBAPIError) -> None:
    """Raise the Herald error a driver failure stands for: unavailable when the connection
    was lost, a conflict when PostgreSQL undid the transaction for colliding with another,
    a validation error when it refused a value; return for any other."""
    if exc.connection_invalidated:
        raise _unavailable(exc) from exc
    if _sqlstate(exc) in _COLLIDED:
        log.warning("transaction undone by PostgreSQL: %s", exc.orig)
        raise ConflictError(
            "The change collided with another made at the same moment; nothing was changed, "
            "retry it"
        ) from exc
    rejected = _rejected_input(exc)
    if rejected is not None:
        raise rejected from exc


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
    *,
    scope: Scope | None = None,
    audit_arguments: Mapping[str, Any] | None = None,
    tenant_scoped: bool = False,
) -> T | Error:
    """Run ``work`` in its own transaction for a caller holding one of ``roles`` (any
    authenticated caller when ``None``: their own data) or, an API key, the ``scope``; a
    caller bound to a tenant only when the work is ``tenant_scoped`` (``Context.require``).
    ``audit_arguments`` replaces the field's arguments in the audit log, for a mutation whose
    arguments must not be kept (a forgotten user's id).

    Admin and manager mutations are recorded in the audit log here, the one place every
    mutation passes through (``backend/services/audit.py`` says which and what): in the same
    transaction when the work succeeds, on its own after the rollback when it fails.
    """
    ctx = info.context
    audited: Principal | None = None
    try:
        principal = ctx.principal()
        if audit_service.is_audited(principal, roles):
            audited = principal
        if roles is not None:
            ctx.require(roles, scope, tenant_scoped=tenant_scoped)
        lazy = _LazySession(ctx.services.sessionmaker)
        try:
            try:
                result = await work(cast(AsyncSession, lazy), principal)
                if audited is not None:
                    await audit_service.record(
                        cast(AsyncSession, lazy),
                        actor=audited,
                        operation=info.field_name,
                        arguments=_arguments(info) if audit_arguments is None else audit_arguments,
                    )
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
            _raise_as_herald_error(exc)
            raise
        return result
    except HeraldError as exc:
        if audited is not None:
            await _record_failure(info, audited, exc.code, exc.message, audit_arguments)
        return error_type_for(exc)
    except Exception:
        if audited is not None:
            await _record_failure(info, audited, "INTERNAL", None, audit_arguments)
        raise


def _arguments(info: strawberry.Info[Context, Any]) -> dict[str, Any]:
    for field in info.selected_fields:
        if isinstance(field, SelectedField):
            return dict(field.arguments)
    return {}


async def _record_failure(
    info: strawberry.Info[Context, Any],
    actor: Principal,
    outcome: str,
    error: str | None,
    arguments: Mapping[str, Any] | None = None,
) -> None:
    """Record a failed mutation in a transaction of its own; never hides the failure itself."""
    try:
        async with info.context.services.sessionmaker() as session:
            await audit_service.record(
                session,
                actor=actor,
                operation=info.field_name,
                arguments=_arguments(info) if arguments is None else arguments,
                outcome=outcome,
                error=error,
            )
            await session.commit()
    except Exception:
        log.exception("could not record %s by %s in the audit log", info.field_name, actor.user_id)


async def read(
    info: strawberry.Info[Context, Any],
    roles: frozenset[Role] | None,
    work: Callable[[AsyncSession, Principal], Awaitable[T]],
    *,
    scope: Scope | None = None,
    tenant_scoped: bool = False,
) -> T:
    """Run a read for a caller holding one of ``roles`` (any authenticated caller if ``None``:
    their own data) or, an API key, the ``scope``; a caller bound to a tenant only when the
    read is ``tenant_scoped`` (``Context.require``).

    Failures raise Herald errors, which reach the client with ``extensions.code``.
    """
    ctx = info.context
    principal = (
        ctx.principal() if roles is None else ctx.require(roles, scope, tenant_scoped=tenant_scoped)
    )
    async with ctx.read_lock:
        session = await ctx.read_session()
        try:
            return await work(session, principal)
        except _DOWN as exc:
            raise _unavailable(exc) from exc
        except sa_exc.DBAPIError as exc:
            # The session is shared by the operation's other query fields: roll the failed
            # statement back so that they still run.
            await session.rollback()
            _raise_as_herald_error(exc)
            raise
