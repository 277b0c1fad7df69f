"""Applying feedback: bounced and complained changes go to the status webhooks whose filter
wants them (a soft bounce is recorded, not announced). Real PostgreSQL for the endpoints and
the history; the webhook queue records what would be enqueued."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal, Role
from backend.config import Settings
from backend.db.history.base import DeliveryStatus, HistoryStore
from backend.services import webhooks
from backend.services.email_feedback import Feedback, FeedbackKind, FeedbackRecorder
from backend.services.task_messages import TaskMessage
from tests.email_feedback.conftest import sent_email, unique_address


class RecordingWebhookQueue:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def enqueue(self, message: TaskMessage) -> None:
        self.calls.append(message.kwargs)


async def test_bounces_and_complaints_reach_the_status_webhooks_that_want_them(
    settings: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    history: HistoryStore,
) -> None:
    endpoint = await webhooks.create_endpoint(
        session,
        actor=Principal(user_id="admin-1", roles=frozenset({Role.ADMIN})),
        settings=settings,
        data=webhooks.EndpointData(
            url="http://127.0.0.1:9/hooks",
            statuses=[DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED],
        ),
    )
    await session.flush()
    hard, soft, spam = [await sent_email(history) for _ in range(3)]
    queue = RecordingWebhookQueue()
    recorder = FeedbackRecorder(
        sessionmaker=sessionmaker,
        history=history,
        webhooks=webhooks.WebhookNotifier(sessionmaker=sessionmaker, queue=queue, cache_seconds=0),
    )

    summary = await recorder.record(
        [
            Feedback(FeedbackKind.HARD_BOUNCE, unique_address("w1"), "ses", "5.1.1", hard.id),
            Feedback(FeedbackKind.SOFT_BOUNCE, unique_address("w2"), "ses", "4.2.2", soft.id),
            Feedback(FeedbackKind.COMPLAINT, unique_address("w3"), "ses", "abuse", spam.id),
        ]
    )

    assert summary.to_json() == {"received": 3, "matched": 3, "suppressed": 2}
    [call] = [c for c in queue.calls if c["endpoint_id"] == str(endpoint.id)]
    assert {(u["id"], u["status"]) for u in call["updates"]} == {
        (hard.id, "bounced"),
        (spam.id, "complained"),
    }
    bounced = next(u for u in call["updates"] if u["id"] == hard.id)
    assert bounced["event_type"] == "movie_added" and bounced["channel"] == "email"
    assert "hard bounce reported by ses" in bounced["reason"]
