"""Live messages on the wire: what publishers put on Redis is what every reader (an API of
the previous release among them) expects, byte for byte, and reading gives back the message."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.services.inbox import InboxEntry
from backend.services.live import (
    OVERFLOW,
    RESYNC,
    DeliveryChange,
    DeliveryUpdates,
    LiveMessage,
    MalformedLiveMessage,
    NewNotification,
    ReadChange,
    decode,
    encode,
    live_channel,
)

NOTIFICATION = NewNotification(
    InboxEntry(
        delivery_id="d-5",
        user_id="u-9",
        seq=7,
        event_id="e-5",
        event_type="movie_added",
        title=None,
        body="Ça tourne — 🎬",
        data={"movie": {"id": 7, "tags": ["a", None]}},
        created_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        read_at=datetime(2026, 11, 26, 12, 5, 1, 250000, tzinfo=UTC),
    )
)
ITEM = {
    "id": "d-1",
    "event_id": "e-1",
    "event_type": "user_registered",
    "campaign_id": None,
    "user_id": "u-1",
    "channel": "email",
    "status": "sent",
    "at": "2026-11-26T12:00:00.500000+00:00",
    "reason": None,
}
# Each message with the bytes the publishers sent before these classes existed.
WIRE: list[tuple[LiveMessage, bytes]] = [
    (
        NOTIFICATION,
        '{"type":"notification","delivery_id":"d-5","seq":7,"event_id":"e-5",'
        '"event_type":"movie_added","title":null,"body":"Ça tourne — 🎬",'
        '"data":{"movie":{"id":7,"tags":["a",null]}},"created_at":"2026-11-26T12:00:00+00:00",'
        '"read_at":"2026-11-26T12:05:01.250000+00:00"}'.encode(),
    ),
    (
        NewNotification(
            InboxEntry(
                delivery_id="d-6",
                user_id="u-9",
                seq=8,
                event_id="e-6",
                event_type="order_shipped",
                title="Shipped",
                body=None,
                data={},
                created_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
                read_at=None,
                actions=[
                    {"label": "Track", "url": "/orders/6"},
                    {"label": "Later", "name": "snooze"},
                ],
            )
        ),
        b'{"type":"notification","delivery_id":"d-6","seq":8,"event_id":"e-6",'
        b'"event_type":"order_shipped","title":"Shipped","body":null,"data":{},'
        b'"created_at":"2026-11-26T12:00:00+00:00","read_at":null,'
        b'"actions":[{"label":"Track","url":"/orders/6"},{"label":"Later","name":"snooze"}]}',
    ),
    (ReadChange(["a", "b"], read=True, archived=False), b'{"type":"read","ids":["a","b"]}'),
    (ReadChange(["a"], read=False, archived=True), b'{"type":"archived","ids":["a"]}'),
    (
        DeliveryUpdates([ITEM]),
        b'{"type":"deliveries","items":[{"id":"d-1","event_id":"e-1",'
        b'"event_type":"user_registered","campaign_id":null,"user_id":"u-1","channel":"email",'
        b'"status":"sent","at":"2026-11-26T12:00:00.500000+00:00","reason":null}]}',
    ),
    (RESYNC, b'{"type":"resync"}'),
    (OVERFLOW, b'{"type":"overflow"}'),
]


@pytest.mark.parametrize(("message", "wire"), WIRE)
def test_each_kind_keeps_its_wire_bytes_and_reads_back(message: LiveMessage, wire: bytes):
    assert encode(message) == wire
    # Read on the channel of the user it was published for (u-9).
    assert decode(wire, user_id="u-9") == message
    assert type(decode(wire, user_id="u-9")) is type(message)


def test_a_notification_is_read_only_on_a_user_channel():
    wire = encode(NOTIFICATION)
    moved = NewNotification(replace(NOTIFICATION.entry, user_id="u-1"))
    assert decode(wire, user_id="u-1") == moved
    with pytest.raises(MalformedLiveMessage):
        decode(wire)  # the delivery feed


def test_the_delivery_feed_reads_typed_changes():
    [change, numbered] = DeliveryUpdates([ITEM, {**ITEM, "sequence": 3}]).changes()
    assert numbered == replace(change, sequence=3)
    assert change == DeliveryChange(
        id="d-1",
        event_id="e-1",
        event_type="user_registered",
        campaign_id=None,
        user_id="u-1",
        channel=Channel.EMAIL,
        status=DeliveryStatus.SENT,
        at=datetime(2026, 11, 26, 12, 0, 0, 500000, tzinfo=UTC),
        reason=None,
        sequence=None,
    )


@pytest.mark.parametrize(
    "wire",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"type":"ping"}',
        b'{"type":"read"}',
        b'{"type":"notification","delivery_id":"d","seq":"x"}',
        b'{"type":"notification","delivery_id":"d","seq":1,"event_id":"e","event_type":"t",'
        b'"created_at":"yesterday"}',
    ],
)
def test_anything_else_is_refused(wire: bytes):
    with pytest.raises(MalformedLiveMessage):
        decode(wire, user_id="u-9")


def test_channels_are_named_per_user_and_for_the_delivery_feed():
    assert live_channel("u-1") == "herald:user:u-1"
    assert live_channel() == "herald:deliveries"
