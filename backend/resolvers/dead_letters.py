"""Dead letter resolvers (admins)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import ADMINS, Principal
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.dead_letters import (
    DeadLetter,
    DeadLetterConnection,
    DeadLettersRetried,
    RetryDeadLettersResult,
)
from backend.services import dead_letters as dead_letter_service

Info = strawberry.Info[Context, Any]


@strawberry.field(description="Deliveries that failed for good, newest first. Admins only.")
async def dead_letters(
    info: Info, first: int = 20, after: str | None = None
) -> DeadLetterConnection:
    async def work(session: AsyncSession, _: Principal) -> DeadLetterConnection:
        page = await dead_letter_service.list_dead_letters(session, first=first, after=after)
        return DeadLetterConnection.from_page(page, DeadLetter.from_model)

    return await read(info, ADMINS, work)


@strawberry.mutation(description="Replay dead letters as fresh deliveries. Admins.")
async def retry_dead_letters(info: Info, ids: list[strawberry.ID]) -> RetryDeadLettersResult:
    clients = info.context.services.clients
    history, queue = clients.history, clients.queue

    async def work(session: AsyncSession, actor: Principal) -> DeadLettersRetried:
        retried, missing = await dead_letter_service.retry_dead_letters(
            session, actor=actor, history=history, queue=queue, delivery_ids=[str(i) for i in ids]
        )
        return DeadLettersRetried(
            retried=[strawberry.ID(i) for i in retried],
            not_found=[strawberry.ID(i) for i in missing],
        )

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


Query = create_type("Query", [dead_letters])
Mutation = create_type("Mutation", [retry_dead_letters])
