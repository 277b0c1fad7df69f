"""In-app notifications: one PUBLISH on the user's Redis channel, read by the API's
GraphQL subscriptions. Storing the item in the user's inbox is the delivery service's job."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis.asyncio as redis_async
from redis.exceptions import RedisError

from backend.channels import Channel
from backend.channels.base import OutgoingMessage, SendResult, TransientChannelError

PROVIDER = "redis"


def user_channel(user_id: str) -> str:
    """The Redis pub/sub channel carrying ``user_id``'s live notifications."""
    return f"herald:user:{user_id}"


class RedisInAppSender:
    """Publishes a notification item on the user's channel."""

    channel: Channel = Channel.IN_APP

    def __init__(self, redis: redis_async.Redis) -> None:
        self._redis = redis

    async def start(self) -> None:
        """Nothing to open: the Redis client and its pool belong to the worker, which shares
        them with other services and closes them itself."""

    async def close(self) -> None:
        """Nothing to release, for the reason given in :meth:`start`."""

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Publish ``message`` to whoever is subscribed to the user's channel right now."""
        item = {
            "type": "notification",
            "delivery_id": message.delivery_id,
            "event_id": message.event_id,
            "event_type": message.event_type,
            "title": message.title,
            "body": message.body,
            "data": message.data,
            "created_at": datetime.now(UTC).isoformat(),
        }
        try:
            # Zero receivers is not a failure: the user is offline and reads the inbox later.
            await self._redis.publish(
                user_channel(message.user.id), json.dumps(item, separators=(",", ":"))
            )
        except (RedisError, OSError) as exc:
            raise TransientChannelError(
                f"cannot publish to Redis: {exc}", provider=PROVIDER
            ) from exc
        return SendResult(provider=PROVIDER)
