"""Mobile push: Firebase Cloud Messaging (HTTP v1) and the Apple Push Notification service,
over httpx, no vendor SDK.

FCM (``HERALD_FCM_PROVIDERS``): a service account signs a JWT (RS256) that the OAuth2 token
endpoint (``token_uri``) exchanges for an access token (cached until shortly before it
expires), then ``POST {url}/v1/projects/{project}/messages:send`` with ``Authorization: Bearer``
and ``{"message": {"token", "notification": {"title", "body"}, "data", "android", "apns"}}``
for each device. FCM answers ``{"name": "projects/.../messages/..."}``, or a Google API error
whose ``details`` carry an ``FcmError.errorCode``: ``UNREGISTERED`` (the app is gone) and an
``INVALID_ARGUMENT`` about ``message.token`` disable the device address.

APNs (``HERALD_APNS_PROVIDERS``): HTTP/2 only, ``POST {url}/3/device/<token>`` with a provider
token (a JWT signed ES256 with the ``.p8`` key, ``kid`` the key id, ``iss`` the team id,
renewed every 50 minutes as Apple asks) and the ``apns-push-type``, ``apns-topic`` and
``apns-priority`` headers; the body ``{"aps": {"alert": {"title", "body"}, "badge", "sound"},
"data": {...}}``. APNs answers 200 with an ``apns-id``, or ``{"reason"}``: a 410
(``Unregistered``, ``ExpiredToken``) disables the device address.

The channel's sender (:class:`MobilePushSender`) sends Android devices through the FCM
providers and iOS devices through the APNs providers (through FCM when no APNs provider is
set), each list a failover chain. A message succeeds when one device got it; the tokens a
service reported gone travel back (``SendResult.expired_endpoints``) to be disabled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from backend.channels import Channel
from backend.channels.base import (
    ChannelError,
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
)
from backend.channels.devices import (
    DeviceOutcome,
    DevicePushSender,
    DevicesError,
    DeviceStatus,
    summarise,
)
from backend.config import ApnsProvider, FcmProvider, Settings

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google access tokens last an hour; one is renewed five minutes before it runs out.
_TOKEN_RENEW_BEFORE_SECONDS = 300
# Apple refuses provider tokens older than an hour and too frequent renewals (< 20 min).
_APNS_TOKEN_SECONDS = 50 * 60
# APNs: the payload of an alert is at most 4 KB.
APNS_MAX_PAYLOAD = 4096
# Reasons for which APNs says the device token will never work again.
_APNS_GONE = frozenset({"Unregistered", "ExpiredToken"})
# APNs reasons about the provider (its key, its topic), not the device: failover moves on.
_APNS_PROVIDER_REASONS = frozenset(
    {
        "ExpiredProviderToken",
        "InvalidProviderToken",
        "MissingProviderToken",
        "TooManyProviderTokenUpdates",
        "BadCertificate",
        "BadCertificateEnvironment",
        "Forbidden",
        "TopicDisallowed",
        "InternalServerError",
        "ServiceUnavailable",
        "Shutdown",
        "TooManyRequests",
    }
)


class MobilePushError(DevicesError):
    """No device got the message (FCM's or APNs')."""


class MobilePushTransientError(MobilePushError, TransientChannelError):
    """No device got the message, at least one failure is worth retrying."""


class MobilePushPermanentError(MobilePushError, PermanentChannelError):
    """No device got the message and retrying will not change that."""


def _summarise(provider: str, outcomes: Sequence[DeviceOutcome]) -> SendResult:
    return summarise(
        outcomes,
        provider=provider,
        nobody="no device",
        label=lambda token: f"…{token[-6:]}",
        transient=MobilePushTransientError,
        permanent=MobilePushPermanentError,
    )


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


# --- FCM -----------------------------------------------------------------------------------------


class FcmSender(DevicePushSender):
    """One FCM project's service account: every device of the message, concurrently."""

    channel: Channel = Channel.PUSH_MOBILE

    def __init__(self, provider: FcmProvider, settings: Settings) -> None:
        self.name = provider.name
        self._timeout = settings.mobile_push_timeout_seconds
        try:
            account = json.loads(provider.service_account.get_secret_value())
            self._email = str(account["client_email"])
            self._key = str(account["private_key"])
            self._key_id = account.get("private_key_id")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"FCM provider {provider.name}: service_account is not a service account JSON "
                "key (client_email, private_key)"
            ) from exc
        self._token_uri = provider.token_uri or account.get("token_uri") or GOOGLE_TOKEN_URI
        base = provider.url.rstrip("/")
        self._send_url = f"{base}/v1/projects/{quote(provider.project_id, safe='')}/messages:send"
        self._access: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def _access_token(self, client: httpx.AsyncClient) -> str:
        async with self._lock:
            now = time.time()
            if self._access is not None and self._access[1] - now > _TOKEN_RENEW_BEFORE_SECONDS:
                return self._access[0]
            claims = {
                "iss": self._email,
                "scope": FCM_SCOPE,
                "aud": self._token_uri,
                "iat": int(now),
                "exp": int(now) + 3600,
            }
            headers = {"kid": self._key_id} if self._key_id else None
            assertion = jwt.encode(claims, self._key, algorithm="RS256", headers=headers)
            try:
                response = await client.post(
                    self._token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion}
                )
            except httpx.HTTPError as exc:
                raise TransientChannelError(
                    f"cannot get an FCM access token: {type(exc).__name__}", provider=self.name
                ) from exc
            body = _json(response)
            if not response.is_success or not isinstance(body, dict) or "access_token" not in body:
                reason = (
                    f"{body.get('error')}: {body.get('error_description', '')}"
                    if isinstance(body, dict)
                    else response.text[:200]
                )
                # The service account is refused: the provider's problem, failover moves on.
                raise TransientChannelError(
                    f"the OAuth2 token endpoint answered {response.status_code} ({reason})",
                    provider=self.name,
                )
            expires = now + float(body.get("expires_in", 3600))
            self._access = (str(body["access_token"]), expires)
            return self._access[0]

    async def send(self, message: OutgoingMessage) -> SendResult:
        client = self._started_client()
        if not message.devices:
            raise PermanentChannelError("the user has no mobile device", provider=self.name)
        access = await self._access_token(client)
        outcomes = await asyncio.gather(
            *(self._push(client, access, d.token, message) for d in message.devices)
        )
        return _summarise(self.name, outcomes)

    async def _push(
        self, client: httpx.AsyncClient, access: str, token: str, message: OutgoingMessage
    ) -> DeviceOutcome:
        payload = {"message": fcm_message(token, message)}
        response = await self._post_to_device(
            client,
            token,
            self._send_url,
            service="FCM",
            json=payload,
            headers={"Authorization": f"Bearer {access}"},
        )
        if isinstance(response, DeviceOutcome):
            return response
        status = response.status_code
        body = _json(response)
        if response.is_success:
            name = body.get("name") if isinstance(body, dict) else None
            return DeviceOutcome(
                token, DeviceStatus.DELIVERED, message_id=str(name) if name else None
            )
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = _fcm_error_code(error)
        detail = f"FCM answered {status} {code}: {error.get('message') or response.text[:200]}"
        if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and _about_token(error)):
            return DeviceOutcome(token, DeviceStatus.EXPIRED, detail)
        if status == 401:
            # The access token was refused: get a new one next time.
            self._access = None
            return DeviceOutcome(token, DeviceStatus.TRANSIENT, detail)
        if status == 429 or status >= 500 or code in ("QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"):
            return DeviceOutcome(
                token, DeviceStatus.TRANSIENT, detail, retry_after=_retry_after(response)
            )
        if code == "THIRD_PARTY_AUTH_ERROR":
            return DeviceOutcome(
                token, DeviceStatus.TRANSIENT, detail
            )  # the project's APNs credentials
        return DeviceOutcome(token, DeviceStatus.PERMANENT, detail)


def fcm_message(token: str, message: OutgoingMessage) -> dict[str, Any]:
    """The FCM v1 ``Message`` for one device."""
    data = {**message.push_data, "delivery_id": message.delivery_id}
    result: dict[str, Any] = {
        "token": token,
        "notification": {"title": message.title or "", "body": message.body or ""},
        "data": data,
    }
    if message.sound:
        result["android"] = {"notification": {"sound": message.sound}}
    aps: dict[str, Any] = {}
    if message.badge is not None:
        aps["badge"] = message.badge
    if message.sound:
        aps["sound"] = message.sound
    if aps:
        result["apns"] = {"payload": {"aps": aps}}
    return result


def _fcm_error_code(error: dict[str, Any]) -> str:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            return str(detail.get("errorCode") or "")
    return str(error.get("status") or "")


def _about_token(error: dict[str, Any]) -> bool:
    """An INVALID_ARGUMENT about the registration token (not about the payload)."""
    for detail in error.get("details") or ():
        for violation in (detail.get("fieldViolations") or ()) if isinstance(detail, dict) else ():
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# --- APNs ----------------------------------------------------------------------------------------


class ApnsSender(DevicePushSender):
    """One APNs signing key (``.p8``) and topic, over HTTP/2."""

    channel: Channel = Channel.PUSH_MOBILE

    def __init__(self, provider: ApnsProvider, settings: Settings) -> None:
        self.name = provider.name
        self._timeout = settings.mobile_push_timeout_seconds
        self._team = provider.team_id
        self._key_id = provider.key_id
        self._key = provider.private_key.get_secret_value()
        self._topic = provider.topic
        self._base = provider.url.rstrip("/")
        self._token: tuple[str, float] | None = None
        # Refuse a key that cannot sign at start, not at every send.
        self._provider_token()

    async def start(self) -> None:
        """APNs speaks HTTP/2 only: the client offers nothing else."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                http1=False, http2=True, timeout=httpx.Timeout(self._timeout)
            )

    def _provider_token(self) -> str:
        now = time.time()
        if self._token is not None and now - self._token[1] < _APNS_TOKEN_SECONDS:
            return self._token[0]
        token = jwt.encode(
            {"iss": self._team, "iat": int(now)},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )
        self._token = (token, now)
        return token

    async def send(self, message: OutgoingMessage) -> SendResult:
        client = self._started_client()
        if not message.devices:
            raise PermanentChannelError("the user has no mobile device", provider=self.name)
        body = json.dumps(apns_payload(message), separators=(",", ":"), ensure_ascii=False)
        if len(body.encode()) > APNS_MAX_PAYLOAD:
            raise PermanentChannelError(
                f"the APNs payload is {len(body.encode())} bytes; APNs takes at most "
                f"{APNS_MAX_PAYLOAD}",
                provider=self.name,
            )
        outcomes = await asyncio.gather(
            *(self._push(client, d.token, body.encode()) for d in message.devices)
        )
        return _summarise(self.name, outcomes)

    async def _push(self, client: httpx.AsyncClient, token: str, body: bytes) -> DeviceOutcome:
        headers = {
            "authorization": f"bearer {self._provider_token()}",
            "apns-push-type": "alert",
            "apns-topic": self._topic,
            "apns-priority": "10",
            "content-type": "application/json",
        }
        url = f"{self._base}/3/device/{quote(token, safe='')}"
        response = await self._post_to_device(
            client, token, url, service="APNs", content=body, headers=headers
        )
        if isinstance(response, DeviceOutcome):
            return response
        status = response.status_code
        if status == 200:
            return DeviceOutcome(
                token, DeviceStatus.DELIVERED, message_id=response.headers.get("apns-id")
            )
        answer = _json(response)
        reason = str(answer.get("reason")) if isinstance(answer, dict) else response.text[:200]
        detail = f"APNs answered {status}: {reason}"
        if status == 410 or reason in _APNS_GONE:
            return DeviceOutcome(token, DeviceStatus.EXPIRED, detail)
        if reason in ("ExpiredProviderToken", "InvalidProviderToken"):
            self._token = None  # sign a new one for the next try
        if status == 429 or status >= 500 or reason in _APNS_PROVIDER_REASONS:
            return DeviceOutcome(
                token, DeviceStatus.TRANSIENT, detail, retry_after=_retry_after(response)
            )
        return DeviceOutcome(token, DeviceStatus.PERMANENT, detail)


def apns_payload(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON body of an APNs alert."""
    aps: dict[str, Any] = {"alert": {"title": message.title or "", "body": message.body or ""}}
    if message.badge is not None:
        aps["badge"] = message.badge
    if message.sound:
        aps["sound"] = message.sound
    return {"aps": aps, "data": {**message.push_data, "delivery_id": message.delivery_id}}


# --- the channel -------------------------------------------------------------------------------


class MobilePushSender:
    """The mobile push channel: Android devices through ``fcm``, iOS devices through ``apns``
    (through ``fcm`` when there is no ``apns``); each a provider's sender or a failover chain.
    """

    channel: Channel = Channel.PUSH_MOBILE

    def __init__(self, *, fcm: ChannelSender | None, apns: ChannelSender | None) -> None:
        self.fcm = fcm
        self.apns = apns

    async def start(self) -> None:
        for sender in (self.fcm, self.apns):
            if sender is not None:
                await sender.start()

    async def close(self) -> None:
        for sender in (self.fcm, self.apns):
            if sender is not None:
                await sender.close()

    def _route(self, platform: str) -> ChannelSender | None:
        if platform == "ios" and self.apns is not None:
            return self.apns
        return self.fcm

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not message.devices:
            raise PermanentChannelError("the user has no mobile device", provider="mobile-push")
        groups: dict[int, tuple[ChannelSender, list[Any]]] = {}
        unrouted = []
        for device in message.devices:
            sender = self._route(device.platform)
            if sender is None:
                unrouted.append(device.platform)
                continue
            groups.setdefault(id(sender), (sender, []))[1].append(device)
        if not groups:
            raise PermanentChannelError(
                "mobile push is not configured for "
                + ", ".join(sorted(set(unrouted)))
                + ": set HERALD_FCM_PROVIDERS (and HERALD_APNS_PROVIDERS for iOS)",
                provider="mobile-push",
            )
        results = await asyncio.gather(
            *(
                sender.send(replace(message, devices=tuple(devices)))
                for sender, devices in groups.values()
            ),
            return_exceptions=True,
        )
        return _merge(results)


def _merge(results: Sequence[SendResult | BaseException]) -> SendResult:
    """One platform's success is the message's; otherwise the most hopeful error."""
    gone: dict[str, str] = {}
    for result in results:
        gone.update(getattr(result, "expired_reasons", None) or {})
    successes = [r for r in results if isinstance(r, SendResult)]
    if successes:
        first = successes[0]
        return replace(
            first,
            expired_endpoints=tuple(gone),
            expired_reasons=gone,
            failed_tries=tuple(t for r in successes for t in r.failed_tries),
        )
    errors = [r for r in results if isinstance(r, ChannelError)]
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ChannelError):
            raise result  # a bug, not a provider's answer
    transient = [e for e in errors if isinstance(e, TransientChannelError)]
    chosen = transient[0] if transient else errors[0]
    if gone and not isinstance(chosen, MobilePushError):
        kind = (
            MobilePushTransientError
            if isinstance(chosen, TransientChannelError)
            else MobilePushPermanentError
        )
        wrapped = kind(
            chosen.message,
            provider=chosen.provider,
            expired_endpoints=tuple(gone),
            expired_reasons=gone,
            retry_after=getattr(chosen, "retry_after", None),
        )
        wrapped.tries = chosen.tries
        raise wrapped
    if isinstance(chosen, MobilePushError):
        chosen.expired_endpoints, chosen.expired_reasons = tuple(gone), gone
    raise chosen
