"""The envelope's wire format: what the API and the producers sent before it was typed must
still decode, and what they send now is what they sent then."""

from __future__ import annotations

import json

from backend.channels import Channel
from backend.services.envelope import Envelope

# An event as ``events._prepare`` built it by hand, key for key.
API_EVENT = {
    "id": "7b0c7a3e-3c1e-4f8e-9d57-7f3f5c1f0a11",
    "type": "user_registered",
    "user_ids": ["u-1", "u-2"],
    "payload": {"name": "Ada"},
    "template_slug": "welcome",
    "channels": ["email", "in_app"],
    "locale": None,
    "critical": False,
    "throttle": [3, 60],
    "digest": None,
    "created_at": "2025-01-02T03:04:05.678901+00:00",
    "send_at": None,
    "actor": "svc-auth",
    "campaign_id": None,
}


def test_an_api_event_goes_out_byte_for_byte_as_before() -> None:
    envelope = Envelope.from_wire(API_EVENT)
    assert envelope.channels == (Channel.EMAIL, Channel.IN_APP)
    assert envelope.throttle == (3, 60)
    assert json.dumps(envelope.to_wire()) == json.dumps(API_EVENT)


def test_a_part_and_a_quiet_release_keep_their_marks_at_the_end() -> None:
    part = {**API_EVENT, "user_ids": ["u-2"], "part": 1}
    released = {**part, "user_ids": ["u-2"], "quiet_released": True}
    assert json.dumps(Envelope.from_wire(part).to_wire()) == json.dumps(part)
    assert json.dumps(Envelope.from_wire(released).to_wire()) == json.dumps(released)
    decoded = Envelope.from_wire(released)
    assert decoded.part == 1 and decoded.quiet_released


def test_a_channel_task_envelope_carries_no_recipients() -> None:
    sent = Envelope.from_wire(API_EVENT).without_recipients().to_wire()
    assert sent == {k: v for k, v in API_EVENT.items() if k != "user_ids"}
    assert Envelope.from_wire(sent).recipients == ()


def test_older_shapes_still_decode() -> None:
    # A campaign page (no throttle or digest keys), a stored digest item (no recipients or
    # payload), a digest (digest_of), and the fewest keys a message ever carried.
    campaign = {k: v for k, v in API_EVENT.items() if k not in ("throttle", "digest")}
    assert Envelope.from_wire(campaign).throttle is None
    item = {k: v for k, v in API_EVENT.items() if k not in ("user_ids", "payload")}
    assert Envelope.from_wire(item).payload is None
    digest = {**item, "user_ids": ["u-1"], "payload": {"count": 2}, "digest_of": ["a", "b"]}
    assert Envelope.from_wire(digest).digest_of == ("a", "b")
    least = {"id": "e", "type": "t", "template_slug": "s", "channels": ["sms"]}
    decoded = Envelope.from_wire(least)
    assert decoded.recipients == () and decoded.channels == (Channel.SMS,)
    assert not decoded.critical and decoded.created_at is None
