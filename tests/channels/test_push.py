"""The Web Push sender against a real HTTP server playing the push service.

The test plays the browser: it owns the subscription's key pair and auth secret, decrypts what
the push service received, and checks the VAPID token the way a push service does.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from typing import Any

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backend.channels import Channel
from backend.channels.base import (
    PermanentChannelError,
    PushSubscription,
    TransientChannelError,
)
from backend.channels.push import (
    PushPermanentError,
    PushTransientError,
    WebPushSender,
    generate_vapid_keys,
    load_vapid_private_key,
)
from tests.channels.conftest import (
    HttpService,
    ReceivedRequest,
    Reply,
    channel_settings,
    outgoing,
    running,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """A browser's side of one push subscription."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def subscribe(cls, endpoint: str) -> Browser:
        return cls(endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def subscription(self) -> PushSubscription:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return PushSubscription(self.endpoint, p256dh=b64url(public), auth=b64url(self.auth))

    def decrypt(self, body: bytes) -> bytes:
        plain: bytes = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return plain


def push_service_replies(request: ReceivedRequest) -> Reply:
    """Endpoints say how they answer: /push/ok-…, /push/gone-…, /push/busy-…, /push/404-…"""
    kind = request.path.rsplit("/", 1)[-1].split("-", 1)[0]
    status = {"ok": 201, "gone": 410, "busy": 503, "404": 404, "bad": 400, "big": 413}[kind]
    return Reply(status, {"kind": kind})


@pytest.fixture
def push_service(http_service: HttpService) -> HttpService:
    http_service.respond = push_service_replies
    return http_service


@pytest.fixture(scope="module")
def vapid_keys() -> tuple[str, str]:
    return generate_vapid_keys()


def push_sender(vapid_keys: tuple[str, str], **overrides: Any) -> WebPushSender:
    values: dict[str, Any] = {
        "vapid_private_key": vapid_keys[0],
        "vapid_public_key": vapid_keys[1],
        "vapid_subject": "mailto:ops@herald.example",
    }
    values.update(overrides)
    return WebPushSender(channel_settings(**values))


def vapid_claims(request: ReceivedRequest, public_key: str, audience: str) -> dict[str, Any]:
    """Check the request's VAPID authorization as a push service would; return the claims."""
    scheme, _, params = request.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(fields["k"]))
    claims: dict[str, Any] = jwt.decode(
        fields["t"], key, algorithms=["ES256"], audience=audience, options={"require": ["exp"]}
    )
    return claims


def pem_keys() -> tuple[str, str]:
    """A VAPID pair whose private half is PEM, as ``openssl ecparam -genkey`` would give."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return pem, b64url(public)


@pytest.mark.parametrize("key_format", ["raw", "pem"])
async def test_push_is_encrypted_for_the_browser_and_signed_with_vapid(
    push_service: HttpService, vapid_keys: tuple[str, str], key_format: str
) -> None:
    keys = vapid_keys if key_format == "raw" else pem_keys()
    browser = Browser.subscribe(f"{push_service.url}/push/ok-1")
    sender = push_sender(keys)
    message = outgoing(
        Channel.PUSH,
        delivery_id="d-9",
        event_type="movie_added",
        title="New film",
        body="Dune is out — watch now",
        data={"movie_id": 7},
        push_subscriptions=(browser.subscription,),
    )
    async with running(sender):
        result = await sender.send(message)

    assert result.provider == "webpush"
    assert result.expired_endpoints == ()
    [request] = push_service.requests
    assert request.path == "/push/ok-1"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert int(request.headers["ttl"]) > 0
    assert request.headers["urgency"] == "normal"
    assert b"Dune" not in request.body
    assert browser.decrypt(request.body).decode() == (
        '{"title":"New film","body":"Dune is out — watch now","data":{"movie_id":7},'
        '"delivery_id":"d-9","event_type":"movie_added"}'
    )
    claims = vapid_claims(request, keys[1], audience=push_service.url)
    assert claims["sub"] == "mailto:ops@herald.example"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600


async def test_each_push_service_gets_a_token_for_its_own_origin(
    push_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    with HttpService() as other:
        other.respond = push_service_replies
        first = Browser.subscribe(f"{push_service.url}/push/ok-a")
        second = Browser.subscribe(f"{other.url}/push/ok-b")
        sender = push_sender(vapid_keys)
        async with running(sender):
            subscriptions = (first.subscription, second.subscription)
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=subscriptions))
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=subscriptions))

    for service, browser in ((push_service, first), (other, second)):
        assert len(service.requests) == 2
        for request in service.requests:
            vapid_claims(request, vapid_keys[1], audience=service.url)
            browser.decrypt(request.body)
    # Every message is encrypted afresh, so two sends never carry the same bytes.
    assert push_service.requests[0].body != push_service.requests[1].body


async def test_gone_subscriptions_are_reported_while_the_others_get_the_push(
    push_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    alive = Browser.subscribe(f"{push_service.url}/push/ok-1")
    gone = Browser.subscribe(f"{push_service.url}/push/gone-1")
    unknown = Browser.subscribe(f"{push_service.url}/push/404-1")
    sender = push_sender(vapid_keys)
    subscriptions = (alive.subscription, gone.subscription, unknown.subscription)
    async with running(sender):
        result = await sender.send(outgoing(Channel.PUSH, push_subscriptions=subscriptions))

    assert set(result.expired_endpoints) == {gone.endpoint, unknown.endpoint}
    assert len(push_service.requests) == 3


async def test_all_subscriptions_gone_is_permanent_and_names_them(
    push_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    gone = Browser.subscribe(f"{push_service.url}/push/gone-1")
    sender = push_sender(vapid_keys)
    async with running(sender):
        with pytest.raises(PermanentChannelError) as raised:
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=(gone.subscription,)))

    assert isinstance(raised.value, PushPermanentError)
    assert raised.value.expired_endpoints == (gone.endpoint,)
    assert raised.value.provider == "webpush"


async def test_busy_push_service_is_transient(
    push_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    busy = Browser.subscribe(f"{push_service.url}/push/busy-1")
    gone = Browser.subscribe(f"{push_service.url}/push/gone-1")
    sender = push_sender(vapid_keys)
    subscriptions = (busy.subscription, gone.subscription)
    async with running(sender):
        with pytest.raises(TransientChannelError, match="503") as raised:
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=subscriptions))

    assert isinstance(raised.value, PushTransientError)
    assert raised.value.expired_endpoints == (gone.endpoint,)


async def test_slow_push_service_is_transient(
    http_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    http_service.respond = lambda request: Reply(201, delay=1.0)
    browser = Browser.subscribe(f"{http_service.url}/push/slow")
    sender = push_sender(vapid_keys, push_timeout_seconds=0.2)
    async with running(sender):
        with pytest.raises(TransientChannelError, match="no answer"):
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=(browser.subscription,)))


@pytest.mark.parametrize("kind", ["bad", "big"])
async def test_other_client_errors_are_permanent(
    push_service: HttpService, vapid_keys: tuple[str, str], kind: str
) -> None:
    browser = Browser.subscribe(f"{push_service.url}/push/{kind}-1")
    sender = push_sender(vapid_keys)
    async with running(sender):
        with pytest.raises(PermanentChannelError) as raised:
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=(browser.subscription,)))
    assert raised.value.expired_endpoints == ()  # type: ignore[attr-defined]


async def test_no_subscription_is_permanent(vapid_keys: tuple[str, str]) -> None:
    sender = push_sender(vapid_keys)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="no push subscription"):
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=()))


async def test_malformed_subscription_is_permanent_without_a_request(
    push_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    broken = PushSubscription(f"{push_service.url}/push/ok-1", p256dh="AAAA", auth="AAAA")
    sender = push_sender(vapid_keys)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="p256dh"):
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=(broken,)))
    assert push_service.requests == []


async def test_oversized_payload_is_permanent(
    push_service: HttpService, vapid_keys: tuple[str, str]
) -> None:
    browser = Browser.subscribe(f"{push_service.url}/push/ok-1")
    sender = push_sender(vapid_keys)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="at most"):
            await sender.send(
                outgoing(Channel.PUSH, body="x" * 5000, push_subscriptions=(browser.subscription,))
            )
    assert push_service.requests == []


async def test_unconfigured_vapid_is_permanent(push_service: HttpService) -> None:
    browser = Browser.subscribe(f"{push_service.url}/push/ok-1")
    sender = WebPushSender(channel_settings(vapid_private_key=None))
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="HERALD_VAPID_PRIVATE_KEY"):
            await sender.send(outgoing(Channel.PUSH, push_subscriptions=(browser.subscription,)))


def test_generated_keys_are_a_p256_pair() -> None:
    private, public = generate_vapid_keys()
    key = load_vapid_private_key(private)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert b64url(point) == public
    assert len(b64url_decode(public)) == 65


def test_bad_vapid_configuration_is_refused_at_construction(vapid_keys: tuple[str, str]) -> None:
    _, other_public = generate_vapid_keys()
    with pytest.raises(ValueError, match="does not belong"):
        push_sender(vapid_keys, vapid_public_key=other_public)
    with pytest.raises(ValueError, match="32 bytes"):
        push_sender(vapid_keys, vapid_private_key=b64url(b"short"), vapid_public_key=None)
