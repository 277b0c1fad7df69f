"""The senders a worker process uses, one per channel with an outside provider.

In-app has no outside provider: its sender (backend.channels.in_app) writes a whole batch to
the inbox and publishes it live through the worker's own engine and publisher, and is made
for each batch by the in-app delivery step.
"""

from __future__ import annotations

from redis.asyncio import Redis

from backend.channels import CHAT_CHANNELS, Channel
from backend.channels.base import ChannelSender
from backend.channels.chat import UnconfiguredChatSender, chat_sender
from backend.channels.email import PROVIDER as SMTP_PROVIDER
from backend.channels.email import SmtpEmailSender
from backend.channels.failover import (
    CircuitBreakers,
    FailoverSender,
    MemoryCircuitBreakers,
    Provider,
    RedisCircuitBreakers,
)
from backend.channels.mobile_push import ApnsSender, FcmSender, MobilePushSender
from backend.channels.push import WebPushSender
from backend.channels.sms import PROVIDER as SMS_PROVIDER
from backend.channels.sms import HttpSmsSender
from backend.channels.webhook import WebhookChannelSender
from backend.config import Settings


def build_senders(
    settings: Settings, *, redis: Redis | None = None
) -> dict[Channel, ChannelSender]:
    """One sender per provider channel, not yet started: the caller awaits ``start()``.

    A channel with fallback providers (``HERALD_SMTP_FALLBACKS``, ``HERALD_SMS_FALLBACKS``)
    gets a :class:`FailoverSender` over all of them, its breakers in ``redis`` when given."""
    senders: list[ChannelSender] = [
        _email(settings, redis),
        _sms(settings, redis),
        WebPushSender(settings),
        WebhookChannelSender(settings),
        _mobile_push(settings, redis),
        *(_chat(channel, settings, redis) for channel in sorted(CHAT_CHANNELS)),
    ]
    return {sender.channel: sender for sender in senders}


def offered_channels(settings: Settings) -> list[Channel]:
    """The channels a user may be reached on here: email, SMS, Web Push and in-app always,
    the others once a provider (or, for webhooks, the signing secret) is configured."""
    configured = {
        Channel.PUSH_MOBILE: bool(settings.fcm_providers or settings.apns_providers),
        **{c: bool(settings.chat_providers[c.value]) for c in CHAT_CHANNELS},
        Channel.WEBHOOK: settings.webhook_channel_secret is not None,
    }
    return [c for c in Channel if configured.get(c, True)]


def failover_chains(settings: Settings) -> dict[Channel, list[str]]:
    """The provider names of each channel with failover, in priority order."""
    chains: dict[Channel, list[str]] = {}
    if settings.smtp_fallbacks:
        chains[Channel.EMAIL] = [SMTP_PROVIDER, *(r.name for r in settings.smtp_fallbacks)]
    if settings.sms_fallbacks:
        chains[Channel.SMS] = [SMS_PROVIDER, *(p.name for p in settings.sms_fallbacks)]
    for channel in sorted(CHAT_CHANNELS):
        providers = settings.chat_providers[channel.value]
        if len(providers) > 1:
            chains[channel] = [p.name for p in providers]
    if len(settings.fcm_providers) > 1 or len(settings.apns_providers) > 1:
        chains[Channel.PUSH_MOBILE] = [p.name for p in settings.fcm_providers] + [
            p.name for p in settings.apns_providers
        ]
    return chains


def circuit_breakers(settings: Settings, redis: Redis | None) -> CircuitBreakers:
    """Breakers shared through Redis, or this process's own without it."""
    if redis is not None:
        return RedisCircuitBreakers(
            redis,
            threshold=settings.breaker_failure_threshold,
            open_seconds=settings.breaker_open_seconds,
        )
    return MemoryCircuitBreakers(
        threshold=settings.breaker_failure_threshold, open_seconds=settings.breaker_open_seconds
    )


def _email(settings: Settings, redis: Redis | None) -> ChannelSender:
    relays = [
        Provider(
            relay.name,
            SmtpEmailSender(
                settings.model_copy(
                    update={
                        "smtp_host": relay.host,
                        "smtp_port": relay.port,
                        "smtp_username": relay.username,
                        "smtp_password": relay.password,
                        "smtp_tls": relay.tls,
                    }
                )
            ),
        )
        for relay in settings.smtp_fallbacks
    ]
    return _failover(settings, redis, Provider(SMTP_PROVIDER, SmtpEmailSender(settings)), relays)


def _sms(settings: Settings, redis: Redis | None) -> ChannelSender:
    fallbacks = [
        Provider(
            fallback.name,
            HttpSmsSender(
                settings.model_copy(
                    update={"sms_provider_url": fallback.url, "sms_provider_token": fallback.token}
                )
            ),
        )
        for fallback in settings.sms_fallbacks
    ]
    return _failover(settings, redis, Provider(SMS_PROVIDER, HttpSmsSender(settings)), fallbacks)


def _chat(channel: Channel, settings: Settings, redis: Redis | None) -> ChannelSender:
    """A chat channel's providers in order (``HERALD_<CHANNEL>_PROVIDERS``)."""
    providers = [
        Provider(p.name, chat_sender(channel, p, settings))
        for p in settings.chat_providers[channel.value]
    ]
    if not providers:
        return UnconfiguredChatSender(channel)
    return _failover(settings, redis, providers[0], providers[1:])


def _mobile_push(settings: Settings, redis: Redis | None) -> ChannelSender:
    """FCM's providers for Android (and iOS without APNs), APNs's for iOS, each a chain."""
    fcm = [Provider(p.name, FcmSender(p, settings)) for p in settings.fcm_providers]
    apns = [Provider(p.name, ApnsSender(p, settings)) for p in settings.apns_providers]
    return MobilePushSender(
        fcm=_failover(settings, redis, fcm[0], fcm[1:]) if fcm else None,
        apns=_failover(settings, redis, apns[0], apns[1:]) if apns else None,
    )


def _failover(
    settings: Settings, redis: Redis | None, primary: Provider, fallbacks: list[Provider]
) -> ChannelSender:
    """A failover sender over ``primary`` then ``fallbacks``, or ``primary``'s own sender when
    there are no fallbacks: one provider has nowhere to fail over to, so it is used as before,
    failures retried with the delivery's own backoff."""
    if not fallbacks:
        return primary.sender
    return FailoverSender(
        primary.sender.channel, [primary, *fallbacks], circuit_breakers(settings, redis)
    )
