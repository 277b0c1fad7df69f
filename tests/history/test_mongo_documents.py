"""What only the MongoDB store has: its documents, its handling of write errors and its
indexes. Its behaviour is the history store contract's (test_contract.py), which runs it on
mongomock's query engine (no MongoDB server can run here)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from backend.channels import Channel
from backend.db.history.base import DeliveryFilter
from backend.db.history.mongo import (
    TTL_INDEX,
    document_to_record,
    find_filter,
    index_models,
    inserted_despite_duplicates,
    record_to_document,
    sort_spec,
)
from tests.history.conftest import T0, full_delivery, make_delivery

# --- documents ----------------------------------------------------------------------------


def test_a_record_survives_the_trip_to_a_document_and_back() -> None:
    record = full_delivery()

    assert document_to_record(record_to_document(record)) == record


def test_the_document_id_is_the_delivery_id_and_enums_are_strings() -> None:
    document = record_to_document(make_delivery("d-9", channel=Channel.IN_APP))

    assert (document["_id"], document["channel"], document["status"]) == ("d-9", "in_app", "queued")
    assert "id" not in document


def test_datetimes_are_kept_to_the_millisecond() -> None:
    record = make_delivery(created_at=T0 + timedelta(microseconds=123_456))

    document = record_to_document(record)

    assert document["created_at"] == T0 + timedelta(microseconds=123_000)
    assert document_to_record(document).created_at == T0 + timedelta(microseconds=123_000)


def test_naive_datetimes_read_back_as_utc() -> None:
    document = record_to_document(make_delivery())
    document["created_at"] = T0.replace(tzinfo=None)

    assert document_to_record(document).created_at == T0
    assert document_to_record(document).created_at.utcoffset() == timedelta(0)


def test_a_document_without_its_optional_fields_still_reads() -> None:
    document = record_to_document(make_delivery())
    for name in ("campaign_id", "subject", "data", "attempts", "read_at", "archived_at"):
        del document[name]

    record = document_to_record(document)

    assert (record.campaign_id, record.subject, record.data, record.attempts) == (
        None,
        None,
        {},
        [],
    )
    assert (record.read_at, record.archived_at) == (None, None)


# --- find_filter --------------------------------------------------------------------------


def test_find_filter_has_only_the_fields_that_are_set() -> None:
    assert find_filter(DeliveryFilter()) == {}
    assert find_filter(DeliveryFilter(channel=Channel.SMS, since=T0)) == {
        "channel": "sms",
        "created_at": {"$gte": T0},
    }


# --- add: write errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        pytest.param(
            {"nInserted": 1, "writeErrors": [{"index": 1, "code": 121, "errmsg": "invalid"}]},
            id="validation error",
        ),
        pytest.param(
            {
                "nInserted": 1,
                "writeErrors": [
                    {"index": 0, "code": 11000, "errmsg": "dup"},
                    {"index": 1, "code": 2, "errmsg": "bad value"},
                ],
            },
            id="a duplicate and another error",
        ),
        pytest.param(
            {"nInserted": 2, "writeErrors": [], "writeConcernErrors": [{"code": 64}]},
            id="write concern",
        ),
    ],
)
def test_errors_other_than_duplicates_are_not_counted_as_stored(details: dict[str, Any]) -> None:
    assert inserted_despite_duplicates(details) is None


# --- indexes ------------------------------------------------------------------------------


def test_the_indexes_match_the_queries_and_expire_old_deliveries(collection: Any) -> None:
    collection.create_indexes(index_models(retention_days=30))

    indexes = collection.index_information()

    assert indexes[TTL_INDEX]["expireAfterSeconds"] == 30 * 86_400
    assert list(indexes[TTL_INDEX]["key"]) == [("created_at", 1)]
    newest_first = [("created_at", -1), ("_id", -1)]
    assert list(indexes["user_id_created_at"]["key"]) == [("user_id", 1), *newest_first]
    assert list(indexes["campaign_id_created_at"]["key"]) == [("campaign_id", 1), *newest_first]
    assert list(indexes["created_at_id"]["key"]) == newest_first
    assert list(indexes["event_id"]["key"]) == [("event_id", 1)]
    assert list(indexes["status"]["key"]) == [("status", 1)]
    assert list(indexes["channel_status"]["key"]) == [("channel", 1), ("status", 1)]
    assert newest_first == sort_spec()
