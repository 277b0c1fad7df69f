"""In-app notifications. There is no outside provider: a delivery is stored in the user's
inbox (backend.services.inbox), then published live on the user's Redis channel, which the
API's GraphQL subscriptions read (backend.realtime)."""

from __future__ import annotations


def user_channel(user_id: str) -> str:
    """The Redis pub/sub channel carrying ``user_id``'s live notifications."""
    return f"herald:user:{user_id}"
