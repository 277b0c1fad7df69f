"""In-app notifications. There is no outside provider: a message is stored in the user's
inbox, its record of truth, then announced live on the user's channel, which the API's GraphQL
subscriptions read. The inbox and the announcement are given by the caller (the in-app
delivery step), as the sending service gives the other channels what they need."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from backend.channels import Channel
from backend.channels.base import OutgoingMessage, SendResult, TransientChannelError

PROVIDER = "inbox"


class Inbox(Protocol):
    """Where in-app messages are kept and announced."""

    async def store(self, messages: Sequence[OutgoingMessage], created_at: datetime) -> Any:
        """Store the messages in one statement; what it returns goes to ``announce``."""

    async def announce(self, stored: Any) -> None:
        """Publish what was stored to its users' live channels (never raises: a lost
        announcement is recovered by subscriptions replaying from the inbox)."""


class InAppSender:
    """Stores messages in their users' inboxes and announces them live. Its clients are the
    worker process's: it opens and closes nothing."""

    channel: Channel = Channel.IN_APP

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Store and announce one message (see :meth:`send_many`)."""
        [result] = await self.send_many([message])
        return result

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Store the messages in one statement of their own, then announce them.

        Raises :class:`TransientChannelError` when the inbox could not be written (then
        nothing was stored)."""
        try:
            stored = await self._inbox.store(messages, datetime.now(UTC))
        except (OSError, SQLAlchemyError) as exc:
            raise TransientChannelError(
                f"the inbox could not be written: {exc}", provider=PROVIDER
            ) from exc
        await self._inbox.announce(stored)
        return [SendResult(provider=PROVIDER) for _ in messages]
