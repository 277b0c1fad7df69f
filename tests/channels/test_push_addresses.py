"""Web Push through recipient addresses: a send goes to the user's active browser addresses;
one the push service answers 410 for is disabled with that answer, and later sends skip it.
Real PostgreSQL (deliveries and addresses) and a real HTTP push service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth import Principal
from backend.channels import Channel
from backend.channels.push import generate_vapid_keys
from backend.config import Settings
from backend.db.history.base import DeliveryStatus
from backend.db.models import RecipientRow
from backend.db.repositories.recipients import RecipientAddressRepository
from backend.db.session import create_sessionmaker
from backend.services import recipients
from backend.services.users import UserProfile
from tests.channels.conftest import HttpService, running
from tests.channels.test_push import Browser, push_sender, push_service_replies
from tests.factories import RecordingQueue, delivery_context, dispatch_and_send


class Profiles:
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]:
        return {u: UserProfile(id=u, first_name="Chen", locale="en") for u in user_ids}


@pytest.fixture
def push_service(http_service: HttpService) -> HttpService:
    http_service.respond = push_service_replies
    return http_service


@pytest.fixture
async def user(engine: AsyncEngine) -> AsyncIterator[str]:
    user_id = f"push-{uuid.uuid4().hex[:10]}"
    yield user_id
    async with engine.begin() as conn:  # the sends below commit for real
        await conn.execute(delete(RecipientRow).where(RecipientRow.user_id == user_id))


async def test_a_gone_browser_is_disabled_with_the_reason_and_skipped_later(
    settings: Settings, engine: AsyncEngine, push_service: HttpService, user: str
) -> None:
    sessionmaker = create_sessionmaker(engine)
    ok = Browser.subscribe(f"{push_service.url}/push/ok-{uuid.uuid4().hex}")
    gone = Browser.subscribe(f"{push_service.url}/push/gone-{uuid.uuid4().hex}")
    async with sessionmaker() as session:
        for browser in (ok, gone):
            sub = browser.subscription
            await recipients.register_address(
                session,
                actor=Principal(user_id=user),
                address=recipients.web_push_address(
                    endpoint=sub.endpoint, p256dh=sub.p256dh, auth=sub.auth, allow_http=True
                ),
            )
        await session.commit()
    sender = push_sender(generate_vapid_keys())
    async with running(sender):
        ctx = delivery_context(
            settings,
            engine,
            None,
            queue=RecordingQueue(),
            users=Profiles(),
            senders={Channel.PUSH: sender},
        )
        first = await dispatch_and_send(ctx, user, Channel.PUSH)
        paths_first = sorted(r.path for r in push_service.requests)
        second = await dispatch_and_send(ctx, user, Channel.PUSH)
        paths_second = [r.path for r in push_service.requests][len(paths_first) :]

    def path(browser: Browser) -> str:
        return browser.endpoint.removeprefix(push_service.url)

    assert paths_first == sorted([path(ok), path(gone)])
    assert paths_second == [path(ok)]  # the gone browser is not asked again
    for ident in (first, second):
        record = await ctx.history.get(ident)
        assert record is not None and record.status is DeliveryStatus.SENT
    async with sessionmaker() as session:
        addresses = {a.key: a for a in await RecipientAddressRepository(session).of_users([user])}
    assert addresses[ok.endpoint].state == "ACTIVE"
    assert addresses[ok.endpoint].last_used_at is not None
    disabled = addresses[gone.endpoint]
    assert disabled.state == "DISABLED"
    assert disabled.disabled_reason and "410" in disabled.disabled_reason
    assert disabled.disabled_at is not None
