"""Delivery channels. Each channel module implements the same protocol (added with the pipeline)."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"
    SLACK = "slack"
    TELEGRAM = "telegram"
    DISCORD = "discord"
    TEAMS = "teams"
    WEBHOOK = "webhook"
    PUSH_MOBILE = "push_mobile"


# Chat channels: the message goes to a chat (a Slack channel, a Telegram chat...) rather than
# to a device or a mailbox (backend.channels.chat).
CHAT_CHANNELS = frozenset({Channel.SLACK, Channel.TELEGRAM, Channel.DISCORD, Channel.TEAMS})
