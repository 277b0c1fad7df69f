"""The recipients migration: its tables are the models', and the browsers' push subscriptions
it copies become active WEB_PUSH addresses that sending reads."""

from __future__ import annotations

import importlib
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db.repositories.recipients import RecipientAddressRepository
from tests.conftest import schema_differences

TABLES = {"recipients", "recipient_addresses", "recipient_syncs"}


async def test_the_migration_creates_the_tables_of_the_models(engine: AsyncEngine) -> None:
    assert await schema_differences(engine, TABLES) == []


async def test_push_subscriptions_become_active_web_push_addresses(
    connection: AsyncConnection, session
) -> None:
    migration = importlib.import_module("backend.db.migrations.versions.0012_recipients")
    user = f"legacy-{uuid.uuid4().hex[:8]}"
    # The table 0012 dropped, as it was, holding two subscriptions of one user (temporary: it
    # goes with the test's transaction).
    await connection.execute(
        text(
            "CREATE TEMPORARY TABLE push_subscriptions (id uuid PRIMARY KEY, user_id text, "
            "endpoint text UNIQUE, p256dh text, auth text, created_at timestamptz DEFAULT now()) "
            "ON COMMIT DROP"
        )
    )
    for n in (1, 2):
        await connection.execute(
            text(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth) "
                "VALUES (:id, :user, :endpoint, 'BKey', 'secret')"
            ),
            {"id": uuid.uuid4(), "user": user, "endpoint": f"https://push.example/{user}/{n}"},
        )

    await connection.execute(text(migration.RECIPIENTS_OF_SUBSCRIPTIONS))
    await connection.execute(text(migration.ADDRESSES_OF_SUBSCRIPTIONS))

    active = await RecipientAddressRepository(session).active([user], kind="WEB_PUSH")
    assert sorted(a.key for a in active) == [
        f"https://push.example/{user}/1",
        f"https://push.example/{user}/2",
    ]
    assert active[0].value["p256dh"] == "BKey" and active[0].value["auth"] == "secret"
    source = await connection.scalar(
        text("SELECT source FROM recipients WHERE user_id = :u"), {"u": user}
    )
    assert source == "address"
