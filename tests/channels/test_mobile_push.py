"""Mobile push against real local servers: FCM HTTP v1 (its OAuth2 token endpoint and
``messages:send``, over HTTP/1.1) and APNs (a real HTTP/2 server: APNs speaks nothing else),
each checking the exact request the service documents and answering as it does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from backend.channels import Channel
from backend.channels.base import (
    ChannelError,
    MobileDevice,
    PermanentChannelError,
    TransientChannelError,
)
from backend.channels.failover import FailoverSender, MemoryCircuitBreakers, Provider
from backend.channels.mobile_push import (
    FCM_SCOPE,
    JWT_BEARER,
    ApnsSender,
    FcmSender,
    MobilePushPermanentError,
    MobilePushSender,
    MobilePushTransientError,
)
from backend.channels.registry import build_senders, failover_chains
from backend.config import ApnsProvider, FcmProvider
from tests.channels.conftest import (
    HttpService,
    ReceivedRequest,
    Reply,
    channel_settings,
    outgoing,
    running,
)
from tests.channels.h2_server import H2Reply, H2Request, H2Server

PROJECT = "herald-test"
ACCESS_TOKEN = "ya29.test-access-token"
ANDROID = "fcm-token-android-0001"
IOS = "a" * 64  # an APNs device token: 32 bytes, hex
TOPIC = "com.example.herald"
TEAM = "TEAM123456"
KEY_ID = "KEY7654321"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
P8 = EC_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def service_account(token_uri: str) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "pkid-1",
            "private_key": RSA_PEM,
            "client_email": f"herald@{PROJECT}.iam.gserviceaccount.com",
            "token_uri": token_uri,
        }
    )


def fcm_sender(url: str, name: str = "fcm") -> FcmSender:
    # The service account names its token URI; the test server plays it at /token.
    provider = FcmProvider(
        name=name, project_id=PROJECT, service_account=service_account(f"{url}/token"), url=url
    )
    return FcmSender(provider, channel_settings())


def apns_sender(url: str, name: str = "apns") -> ApnsSender:
    provider = ApnsProvider(
        name=name, team_id=TEAM, key_id=KEY_ID, private_key=P8, topic=TOPIC, url=url
    )
    return ApnsSender(provider, channel_settings())


def push(*devices: MobileDevice, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "devices": devices,
        "title": "Welcome!",
        "body": "Hello Ada",
        "push_data": {"screen": "welcome"},
        "badge": 3,
        "sound": "chime.caf",
    }
    values.update(overrides)
    return outgoing(Channel.PUSH_MOBILE, **values)


def fcm_error(status: int, code: str, message: str, *extra: dict[str, Any]) -> Reply:
    name = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}.get(
        status, "UNAVAILABLE"
    )
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    return Reply(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "status": name,
                "details": [*details, *extra],
            }
        },
    )


class FakeFcm:
    """Google's token endpoint and FCM's ``messages:send``: checks each request as documented;
    ``answers`` by device token (else a success)."""

    def __init__(self, service: HttpService) -> None:
        self.service = service
        self.answers: dict[str, Reply] = {}
        self.token_answer: Reply | None = None
        service.respond = self.respond

    def respond(self, request: ReceivedRequest) -> Reply:
        if request.path == "/token":
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            form = parse_qs(request.body.decode())
            assert form["grant_type"] == [JWT_BEARER]
            [assertion] = form["assertion"]
            assert jwt.get_unverified_header(assertion)["kid"] == "pkid-1"
            claims = jwt.decode(
                assertion,
                RSA_KEY.public_key(),
                algorithms=["RS256"],
                audience=f"{self.service.url}/token",
            )
            assert claims["iss"] == f"herald@{PROJECT}.iam.gserviceaccount.com"
            assert claims["scope"] == FCM_SCOPE
            assert claims["exp"] - claims["iat"] == 3600
            if self.token_answer is not None:
                return self.token_answer
            return Reply(
                200, {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            )
        assert request.path == f"/v1/projects/{PROJECT}/messages:send"
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication")
        token = request.json()["message"]["token"]
        return self.answers.get(
            token, Reply(200, {"name": f"projects/{PROJECT}/messages/0:{token[-4:]}"})
        )

    def sends(self) -> list[ReceivedRequest]:
        return [r for r in self.service.requests if r.path.endswith("messages:send")]

    def token_requests(self) -> list[ReceivedRequest]:
        return [r for r in self.service.requests if r.path == "/token"]


@pytest.fixture
def fcm(http_service: HttpService) -> FakeFcm:
    return FakeFcm(http_service)


class FakeApns:
    """APNs over HTTP/2: checks each request as Apple documents; ``answers`` by device."""

    def __init__(self, server: H2Server) -> None:
        self.server = server
        self.answers: dict[str, H2Reply] = {}
        server.respond = self.respond

    def respond(self, request: H2Request) -> H2Reply:
        assert request.method == "POST"
        assert request.path.startswith("/3/device/")
        scheme, _, token = request.headers["authorization"].partition(" ")
        assert scheme == "bearer"
        header = jwt.get_unverified_header(token)
        assert (header["alg"], header["kid"]) == ("ES256", KEY_ID)
        claims = jwt.decode(token, EC_KEY.public_key(), algorithms=["ES256"])
        assert claims["iss"] == TEAM and isinstance(claims["iat"], int)
        assert request.headers["apns-push-type"] == "alert"
        assert request.headers["apns-topic"] == TOPIC
        assert request.headers["apns-priority"] == "10"
        device = request.path.removeprefix("/3/device/")
        return self.answers.get(
            device, H2Reply(200, headers={"apns-id": "EC1BF194-B3B2-424A-89A9-5A918A6E6B5A"})
        )


@pytest.fixture
async def apns() -> AsyncIterator[FakeApns]:
    server = H2Server()
    await server.start()
    yield FakeApns(server)
    await server.stop()


# --- FCM -----------------------------------------------------------------------------------------


async def test_fcm_exchanges_a_service_account_jwt_then_sends_the_v1_message(fcm: FakeFcm) -> None:
    sender = fcm_sender(fcm.service.url)
    async with running(sender):
        result = await sender.send(push(MobileDevice(ANDROID, "android"), delivery_id="d-9"))
        again = await sender.send(push(MobileDevice(ANDROID, "android"), delivery_id="d-10"))

    assert result.provider == "fcm"
    assert result.provider_message_id == f"projects/{PROJECT}/messages/0:0001"
    assert again.provider_message_id == result.provider_message_id
    assert len(fcm.token_requests()) == 1  # the access token is reused until it runs out
    first = fcm.sends()[0]
    assert first.method == "POST"
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "message": {
            "token": ANDROID,
            "notification": {"title": "Welcome!", "body": "Hello Ada"},
            "data": {"screen": "welcome", "delivery_id": "d-9"},
            "android": {"notification": {"sound": "chime.caf"}},
            "apns": {"payload": {"aps": {"badge": 3, "sound": "chime.caf"}}},
        }
    }


async def test_fcm_unregistered_token_is_reported_gone_while_another_device_gets_it(
    fcm: FakeFcm,
) -> None:
    fcm.answers["stale-token"] = fcm_error(404, "UNREGISTERED", "Requested entity was not found.")
    sender = fcm_sender(fcm.service.url)
    async with running(sender):
        result = await sender.send(
            push(MobileDevice(ANDROID, "android"), MobileDevice("stale-token", "android"))
        )
    assert result.expired_endpoints == ("stale-token",)
    assert "UNREGISTERED" in result.expired_reasons["stale-token"]


def fcm_bad_request(message: str, field: str, description: str) -> Reply:
    """FCM's 400 INVALID_ARGUMENT, naming the field of the message it refused."""
    violation = {"field": field, "description": description}
    details = {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
    return fcm_error(400, "INVALID_ARGUMENT", message, details)


async def test_fcm_invalid_token_disables_but_an_invalid_payload_does_not(fcm: FakeFcm) -> None:
    fcm.answers["bad-token"] = fcm_bad_request(
        "The registration token is not a valid FCM registration token",
        "message.token",
        "Invalid token",
    )
    fcm.answers["fine-token"] = fcm_bad_request(
        "Invalid value at 'message.data[0].value'", "message.data[0].value", "Invalid"
    )
    sender = fcm_sender(fcm.service.url)
    async with running(sender):
        with pytest.raises(MobilePushPermanentError) as gone:
            await sender.send(push(MobileDevice("bad-token", "android")))
        with pytest.raises(MobilePushPermanentError, match=r"message\.data") as payload:
            await sender.send(push(MobileDevice("fine-token", "android")))
    assert gone.value.expired_endpoints == ("bad-token",)
    assert payload.value.expired_endpoints == ()


async def test_fcm_quota_exceeded_is_transient_with_retry_after(fcm: FakeFcm) -> None:
    reply = fcm_error(429, "QUOTA_EXCEEDED", "Quota exceeded")
    reply.headers["Retry-After"] = "20"
    fcm.answers[ANDROID] = reply
    sender = fcm_sender(fcm.service.url)
    async with running(sender):
        with pytest.raises(MobilePushTransientError, match="QUOTA_EXCEEDED") as raised:
            await sender.send(push(MobileDevice(ANDROID, "android")))
    assert raised.value.retry_after == 20.0


async def test_fcm_refused_service_account_is_transient(fcm: FakeFcm) -> None:
    fcm.token_answer = Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT"})
    sender = fcm_sender(fcm.service.url)
    async with running(sender):
        with pytest.raises(TransientChannelError, match="invalid_grant: Invalid JWT"):
            await sender.send(push(MobileDevice(ANDROID, "android")))
    assert fcm.sends() == []


async def test_fcm_401_drops_the_access_token_and_the_next_send_gets_a_new_one(
    fcm: FakeFcm,
) -> None:
    fcm.token_answer = Reply(200, {"access_token": "revoked", "expires_in": 3599})
    sender = fcm_sender(fcm.service.url)
    async with running(sender):
        with pytest.raises(MobilePushTransientError, match="401"):
            await sender.send(push(MobileDevice(ANDROID, "android")))
        fcm.token_answer = None
        result = await sender.send(push(MobileDevice(ANDROID, "android")))
    assert result.provider_message_id is not None
    assert len(fcm.token_requests()) == 2


def test_a_malformed_service_account_is_refused_at_start() -> None:
    provider = FcmProvider(name="fcm", project_id=PROJECT, service_account='{"type": "x"}')
    with pytest.raises(ValueError, match="service account JSON"):
        FcmSender(provider, channel_settings())


# --- APNs ----------------------------------------------------------------------------------------


async def test_apns_posts_over_http2_with_a_provider_token_and_apple_headers(
    apns: FakeApns,
) -> None:
    sender = apns_sender(apns.server.url)
    async with running(sender):
        result = await sender.send(push(MobileDevice(IOS, "ios"), delivery_id="d-ios"))

    assert result.provider == "apns"
    assert result.provider_message_id == "EC1BF194-B3B2-424A-89A9-5A918A6E6B5A"
    [request] = apns.server.requests
    assert request.path == f"/3/device/{IOS}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "aps": {
            "alert": {"title": "Welcome!", "body": "Hello Ada"},
            "badge": 3,
            "sound": "chime.caf",
        },
        "data": {"screen": "welcome", "delivery_id": "d-ios"},
    }


async def test_the_apns_stand_in_speaks_http2_only(apns: FakeApns) -> None:
    """What makes the test above an HTTP/2 test: an HTTP/1.1 request gets no answer."""
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.HTTPError):
            await client.post(f"{apns.server.url}/3/device/{IOS}", json={})
    assert apns.server.requests == []


async def test_apns_410_unregistered_reports_the_token_gone(apns: FakeApns) -> None:
    apns.answers[IOS] = H2Reply(410, {"reason": "Unregistered", "timestamp": 1700000000000})
    sender = apns_sender(apns.server.url)
    async with running(sender):
        with pytest.raises(MobilePushPermanentError, match="410: Unregistered") as raised:
            await sender.send(push(MobileDevice(IOS, "ios")))
    assert raised.value.expired_endpoints == (IOS,)


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (400, "BadDeviceToken", MobilePushPermanentError),
        (400, "PayloadEmpty", MobilePushPermanentError),
        (403, "InvalidProviderToken", MobilePushTransientError),
        (429, "TooManyRequests", MobilePushTransientError),
        (503, "ServiceUnavailable", MobilePushTransientError),
    ],
)
async def test_apns_errors(
    apns: FakeApns, status: int, reason: str, error: type[Exception]
) -> None:
    apns.answers[IOS] = H2Reply(status, {"reason": reason})
    sender = apns_sender(apns.server.url)
    async with running(sender):
        with pytest.raises(error, match=f"{status}: {reason}") as raised:
            await sender.send(push(MobileDevice(IOS, "ios")))
    assert raised.value.expired_endpoints == ()


async def test_an_oversized_apns_payload_is_refused_before_any_request(apns: FakeApns) -> None:
    sender = apns_sender(apns.server.url)
    async with running(sender):
        with pytest.raises(PermanentChannelError, match="at most 4096"):
            await sender.send(push(MobileDevice(IOS, "ios"), body="x" * 5000))
    assert apns.server.requests == []


# --- the channel: routing and failover ------------------------------------------------------------


async def test_android_devices_go_to_fcm_and_ios_devices_to_apns(
    fcm: FakeFcm, apns: FakeApns
) -> None:
    apns.answers["b" * 64] = H2Reply(410, {"reason": "Unregistered"})
    sender = MobilePushSender(fcm=fcm_sender(fcm.service.url), apns=apns_sender(apns.server.url))
    async with running(sender):
        result = await sender.send(
            push(
                MobileDevice(ANDROID, "android"),
                MobileDevice(IOS, "ios"),
                MobileDevice("b" * 64, "ios"),
            )
        )
    assert [r.json()["message"]["token"] for r in fcm.sends()] == [ANDROID]
    assert sorted(r.path for r in apns.server.requests) == [
        f"/3/device/{IOS}",
        f"/3/device/{'b' * 64}",
    ]
    assert result.expired_endpoints == ("b" * 64,)


async def test_without_apns_ios_tokens_go_to_fcm_and_without_fcm_android_fails(
    fcm: FakeFcm, apns: FakeApns
) -> None:
    only_fcm = MobilePushSender(fcm=fcm_sender(fcm.service.url), apns=None)
    only_apns = MobilePushSender(fcm=None, apns=apns_sender(apns.server.url))
    async with running(only_fcm), running(only_apns):
        await only_fcm.send(push(MobileDevice("fcm-token-ios", "ios")))
        with pytest.raises(PermanentChannelError, match="not configured for android"):
            await only_apns.send(push(MobileDevice(ANDROID, "android")))
    assert [r.json()["message"]["token"] for r in fcm.sends()] == ["fcm-token-ios"]


async def test_fcm_fails_over_to_the_second_service_account(
    fcm: FakeFcm, second_service: HttpService
) -> None:
    fcm.answers[ANDROID] = fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    backup = FakeFcm(second_service)
    chain = FailoverSender(
        Channel.PUSH_MOBILE,
        [
            Provider("fcm-a", fcm_sender(fcm.service.url, "fcm-a")),
            Provider("fcm-b", fcm_sender(backup.service.url, "fcm-b")),
        ],
        MemoryCircuitBreakers(threshold=5, open_seconds=30),
    )
    async with running(chain):
        result = await chain.send(push(MobileDevice(ANDROID, "android")))
    assert result.provider == "fcm-b"
    assert [t.provider for t in result.failed_tries] == ["fcm-a"]
    assert "503 UNAVAILABLE" in result.failed_tries[0].error
    assert len(backup.sends()) == 1


async def test_apns_fails_over_to_the_second_endpoint() -> None:
    primary, fallback = H2Server(), H2Server()  # Apple's port 443, then its port 2197
    await primary.start()
    await fallback.start()
    try:
        first, second = FakeApns(primary), FakeApns(fallback)
        first.answers[IOS] = H2Reply(500, {"reason": "InternalServerError"})
        chain = FailoverSender(
            Channel.PUSH_MOBILE,
            [
                Provider("apns-443", apns_sender(primary.url, "apns-443")),
                Provider("apns-2197", apns_sender(fallback.url, "apns-2197")),
            ],
            MemoryCircuitBreakers(threshold=5, open_seconds=30),
        )
        async with running(chain):
            result = await chain.send(push(MobileDevice(IOS, "ios")))
        assert result.provider == "apns-2197"
        assert [t.provider for t in result.failed_tries] == ["apns-443"]
        assert len(primary.requests) == len(fallback.requests) == 1
        assert second.server is fallback
    finally:
        await primary.stop()
        await fallback.stop()


def test_registry_builds_mobile_push_from_both_provider_lists() -> None:
    settings = channel_settings(
        fcm_providers=[
            {"name": "fcm-a", "project_id": PROJECT, "service_account": service_account("x")},
            {"name": "fcm-b", "project_id": PROJECT, "service_account": service_account("x")},
        ],
        apns_providers=[
            {"name": "apns", "team_id": TEAM, "key_id": KEY_ID, "private_key": P8, "topic": TOPIC}
        ],
    )
    sender = build_senders(settings)[Channel.PUSH_MOBILE]
    assert isinstance(sender, MobilePushSender)
    assert isinstance(sender.fcm, FailoverSender)
    assert isinstance(sender.apns, ApnsSender)
    assert failover_chains(settings)[Channel.PUSH_MOBILE] == ["fcm-a", "fcm-b", "apns"]


def stale_token_failover(
    fcm: FakeFcm, second_service: HttpService, backup_answers: dict[str, Reply]
) -> tuple[FailoverSender, tuple[MobileDevice, ...]]:
    """fcm-a finds "stale-token" gone for good and cannot reach ANDROID now (transient: the
    message fails over to fcm-b, which answers ``backup_answers``); the two devices."""
    fcm.answers["stale-token"] = fcm_error(404, "UNREGISTERED", "Requested entity was not found.")
    fcm.answers[ANDROID] = fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    backup = FakeFcm(second_service)
    backup.answers.update(backup_answers)
    chain = FailoverSender(
        Channel.PUSH_MOBILE,
        [
            Provider("fcm-a", fcm_sender(fcm.service.url, "fcm-a")),
            Provider("fcm-b", fcm_sender(backup.service.url, "fcm-b")),
        ],
        MemoryCircuitBreakers(threshold=5, open_seconds=30),
    )
    return chain, (MobileDevice(ANDROID, "android"), MobileDevice("stale-token", "android"))


async def test_a_token_the_first_provider_found_gone_is_still_reported_after_failover(
    fcm: FakeFcm, second_service: HttpService
) -> None:
    # fcm-b delivers to the reachable device and fails the other one with a server error, so
    # only fcm-a said the stale token is gone.
    chain, devices = stale_token_failover(
        fcm, second_service, {"stale-token": fcm_error(500, "INTERNAL", "Internal error")}
    )
    async with running(chain):
        result = await chain.send(push(*devices))

    assert result.provider == "fcm-b"
    assert result.expired_endpoints == ("stale-token",)
    assert "UNREGISTERED" in result.expired_reasons["stale-token"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(
            fcm_error(503, "UNAVAILABLE", "The service is unavailable."),
            TransientChannelError,
            id="transient",
        ),
        pytest.param(
            fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload"),
            PermanentChannelError,
            id="permanent",
        ),
    ],
)
async def test_a_token_found_gone_travels_with_the_final_error_of_a_failover(
    fcm: FakeFcm, second_service: HttpService, answer: Reply, error: type[ChannelError]
) -> None:
    """The second provider fails the reachable device (a transient or a permanent error,
    its own message kept): the token the first found gone still travels with that error."""
    message = answer.body["error"]["message"]
    chain, devices = stale_token_failover(
        fcm, second_service, {ANDROID: answer, "stale-token": answer}
    )
    async with running(chain):
        with pytest.raises(error, match=message) as raised:
            await chain.send(push(*devices))

    assert raised.value.provider == "fcm-b"
    assert [t.provider for t in raised.value.tries] == ["fcm-a"]
    assert raised.value.expired_endpoints == ("stale-token",)
    assert "UNREGISTERED" in raised.value.expired_reasons["stale-token"]
