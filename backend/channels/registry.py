"""The senders a worker process uses, one per channel."""

from __future__ import annotations

import redis.asyncio as redis_async

from backend.channels import Channel
from backend.channels.base import ChannelSender
from backend.channels.email import SmtpEmailSender
from backend.channels.in_app import RedisInAppSender
from backend.channels.push import WebPushSender
from backend.channels.sms import HttpSmsSender
from backend.config import Settings


def build_senders(settings: Settings, redis: redis_async.Redis) -> dict[Channel, ChannelSender]:
    """One sender per channel, not yet started: the caller awaits ``start()`` on its loop."""
    senders: list[ChannelSender] = [
        SmtpEmailSender(settings),
        HttpSmsSender(settings),
        WebPushSender(settings),
        RedisInAppSender(redis),
    ]
    return {sender.channel: sender for sender in senders}
