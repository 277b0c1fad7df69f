"""In-app notifications. There is no outside provider: a message is stored in the user's
inbox, its record of truth (backend.services.inbox), then published live on the user's Redis
channel (backend.services.live), which the API's GraphQL subscriptions read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.channels.base import OutgoingMessage, SendResult, TransientChannelError
from backend.db.repositories.inbox import NewInboxItem
from backend.services.inbox import store_items
from backend.services.live import NewNotification, RedisLivePublisher

PROVIDER = "inbox"


class InAppSender:
    """Stores messages in their users' inboxes and publishes them live. Its clients (the
    database engine, Redis) are the worker process's: it opens and closes nothing."""

    channel: Channel = Channel.IN_APP

    def __init__(self, engine: AsyncEngine, live: RedisLivePublisher | None) -> None:
        self._engine = engine
        self._live = live

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Store and publish one message (see :meth:`send_many`)."""
        [result] = await self.send_many([message])
        return result

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Store the messages in one statement of its own, then publish them live in one
        Redis pipeline. A lost publish is recovered by subscriptions replaying from the inbox,
        so it never fails a message.

        Raises :class:`TransientChannelError` when the inbox could not be written (then
        nothing was stored)."""
        created_at = datetime.now(UTC)
        items = [
            NewInboxItem(
                delivery_id=message.delivery_id,
                user_id=message.user.id,
                event_id=message.event_id,
                event_type=message.event_type,
                title=message.title,
                body=message.body,
                data=message.data,
                created_at=created_at,
            )
            for message in messages
        ]
        try:
            entries = await store_items(self._engine, items)
        except (OSError, SQLAlchemyError) as exc:
            raise TransientChannelError(
                f"the inbox could not be written: {exc}", provider=PROVIDER
            ) from exc
        if self._live is not None:
            await self._live.publish_many([(e.user_id, NewNotification(e)) for e in entries])
        return [SendResult(provider=PROVIDER) for _ in messages]
