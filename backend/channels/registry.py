"""The senders a worker process uses, one per channel with an outside provider.

In-app has none: its deliveries go to the inbox and out through the live publisher
(backend.services.inbox), which puts each item's sequence number in the message, as the
subscriptions require.
"""

from __future__ import annotations

from backend.channels import Channel
from backend.channels.base import ChannelSender
from backend.channels.email import SmtpEmailSender
from backend.channels.push import WebPushSender
from backend.channels.sms import HttpSmsSender
from backend.config import Settings


def build_senders(settings: Settings) -> dict[Channel, ChannelSender]:
    """One sender per provider channel, not yet started: the caller awaits ``start()``."""
    senders: list[ChannelSender] = [
        SmtpEmailSender(settings),
        HttpSmsSender(settings),
        WebPushSender(settings),
    ]
    return {sender.channel: sender for sender in senders}
