"""forget_user removes what Herald keeps of one user, and only that."""

from __future__ import annotations

import uuid

from backend.auth import Principal
from backend.db.repositories.recipients import (
    RecipientAddressRepository,
    RecipientRepository,
    forget_user,
)
from backend.services import recipients


async def test_forget_user_deletes_the_recipient_and_its_addresses(session) -> None:
    gone, kept = f"f-{uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4().hex[:8]}"
    for user, chats in ((gone, ("1", "2")), (kept, ("3",))):
        await recipients.identify_recipient(
            session,
            user_id=user,
            profile=recipients.ProfileInput(email=f"{user}@example.com"),
            addresses=[recipients.chat_address(provider="slack", chat_id=c) for c in chats],
        )
    await recipients.register_address(
        session,
        actor=Principal(user_id=gone),
        address=recipients.mobile_push_address(platform="android", token="tok-1"),
    )

    assert await forget_user(session, gone) == 4  # three addresses and the recipient
    assert await forget_user(session, gone) == 0

    assert await RecipientRepository(session).get(gone) is None
    assert await RecipientAddressRepository(session).of_users([gone]) == []
    assert await RecipientRepository(session).get(kept) is not None
    assert len(await RecipientAddressRepository(session).of_users([kept])) == 1
