"""The MongoDB store's documents, run through mongomock's query engine (no server here): the
filters, sort, updates and pipeline must select, order and change exactly what the history
store contract says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import mongomock
import pytest
from pymongo.errors import BulkWriteError

from backend.channels import Channel
from backend.db.history.base import (
    Attempt,
    DeliveryFilter,
    DeliveryRecord,
    DeliveryStatus,
    Rendered,
    StatusChange,
    decode_history_cursor,
    history_cursor,
)
from backend.db.history.mongo import (
    TTL_INDEX,
    count_pipeline,
    counts_from_groups,
    document_to_record,
    documents_to_insert,
    find_filter,
    index_models,
    inserted_despite_duplicates,
    new_document,
    record_to_document,
    sort_spec,
    transition_update,
)
from tests.history.conftest import (
    FILTER_CASES,
    PAGING_ORDER,
    T0,
    filter_dataset,
    full_delivery,
    make_delivery,
    minutes,
    paging_dataset,
)

S = DeliveryStatus
Collection = Any  # mongomock ships no type hints


@pytest.fixture
def collection() -> Iterator[Collection]:
    client: Any = mongomock.MongoClient(tz_aware=True)
    yield client.herald.deliveries
    client.close()


def insert(collection: Collection, records: list[DeliveryRecord]) -> None:
    collection.insert_many([new_document(record) for record in records])


def select(
    collection: Collection, filter: DeliveryFilter, after: str | None = None, limit: int = 0
) -> list[DeliveryRecord]:
    """What the store's find() runs, cursor decoding included."""
    position = None if after is None else decode_history_cursor(after)
    documents = collection.find(find_filter(filter, position)).sort(sort_spec()).limit(limit)
    return [document_to_record(document) for document in documents]


def stored(collection: Collection, delivery_id: str) -> DeliveryRecord:
    document = collection.find_one({"_id": delivery_id})
    assert document is not None
    return document_to_record(document)


# --- documents ----------------------------------------------------------------------------


def test_a_record_survives_the_trip_to_a_document_and_back() -> None:
    record = full_delivery()

    assert document_to_record(record_to_document(record)) == record


def test_a_record_survives_being_stored(collection: Collection) -> None:
    record = full_delivery()
    collection.insert_one(record_to_document(record))

    assert stored(collection, record.id) == record


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


def test_a_new_document_starts_its_timeline_at_created_at() -> None:
    record = make_delivery(status=S.SKIPPED, created_at=minutes(2), updated_at=minutes(3))

    assert record_to_document(record)["timeline"] == []
    assert new_document(record)["timeline"] == [
        {"status": "skipped", "at": minutes(2), "reason": None}
    ]
    assert record.timeline == []


def test_a_new_document_keeps_a_timeline_it_was_given() -> None:
    record = full_delivery()

    assert new_document(record)["timeline"] == record_to_document(record)["timeline"]
    assert len(new_document(record)["timeline"]) == 3


# --- find_filter and sort_spec ------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter", "expected"),
    [pytest.param(f, ids, id=name) for name, f, ids in FILTER_CASES],
)
def test_find_filter_selects_by_every_field(
    collection: Collection, filter: DeliveryFilter, expected: list[str]
) -> None:
    insert(collection, filter_dataset())

    assert [r.id for r in select(collection, filter)] == expected


def test_find_filter_has_only_the_fields_that_are_set() -> None:
    assert find_filter(DeliveryFilter()) == {}
    assert find_filter(DeliveryFilter(channel=Channel.SMS, since=T0)) == {
        "channel": "sms",
        "created_at": {"$gte": T0},
    }


def test_sort_spec_breaks_created_at_ties_by_id_descending(collection: Collection) -> None:
    ids = ["b", "a", "B", "a-1", "a1", "c"]
    insert(collection, [make_delivery(i, created_at=T0) for i in ids])
    insert(collection, [make_delivery("older", created_at=T0 - timedelta(milliseconds=1))])
    insert(collection, [make_delivery("newer", created_at=T0 + timedelta(milliseconds=1))])

    found = select(collection, DeliveryFilter())

    assert [r.id for r in found] == ["newer", "c", "b", "a1", "a-1", "a", "B", "older"]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_cursor_pages_cover_every_record_once_in_order(collection: Collection, size: int) -> None:
    insert(collection, paging_dataset())
    insert(collection, [make_delivery("someone-else", user_id="other", created_at=minutes(2))])
    pager = DeliveryFilter(user_id="pager")

    seen: list[str] = []
    after = None
    for _ in PAGING_ORDER:  # a cursor that fails to advance must not loop for ever
        # One more than the page, as the store reads it, to know whether a next page exists.
        rows = select(collection, pager, after=after, limit=size + 1)
        page = rows[:size]
        seen += [r.id for r in page]
        if len(rows) <= size:
            break
        after = history_cursor(page[-1])
    else:
        pytest.fail(f"paging did not end: {seen}")

    assert seen == PAGING_ORDER


def test_a_cursor_keeps_the_filter_and_the_time_window(collection: Collection) -> None:
    insert(collection, filter_dataset())
    window = DeliveryFilter(since=minutes(1), until=minutes(6))
    after_d5 = history_cursor(make_delivery("d5", created_at=minutes(3)))

    assert [r.id for r in select(collection, window, after=after_d5)] == ["d4", "d3", "d2"]
    assert [r.id for r in select(collection, DeliveryFilter(status=S.SENT), after=after_d5)] == [
        "d4",
        "d1",
    ]


# --- transition_update --------------------------------------------------------------------


def apply(collection: Collection, delivery_id: str, status: DeliveryStatus, **kwargs: Any) -> bool:
    """What the store's transition() runs."""
    query, update = transition_update(delivery_id, status, **kwargs)
    return bool(collection.update_one(query, update).matched_count == 1)


def test_transition_update_moves_an_expected_status(collection: Collection) -> None:
    insert(collection, [make_delivery("d-1")])

    assert apply(
        collection,
        "d-1",
        S.SENDING,
        at=minutes(1),
        expected=frozenset({S.QUEUED}),
        reason="worker-1",
        rendered=Rendered(subject="Welcome", locale="en"),
    )

    record = stored(collection, "d-1")
    assert (record.status, record.updated_at) == (S.SENDING, minutes(1))
    assert record.timeline == [
        StatusChange(S.QUEUED, T0),
        StatusChange(S.SENDING, minutes(1), reason="worker-1"),
    ]
    assert (record.subject, record.title, record.locale) == ("Welcome", None, "en")


def test_transition_update_refuses_an_unexpected_status(collection: Collection) -> None:
    insert(collection, [make_delivery("d-1", status=S.SENT)])
    before = collection.find_one({"_id": "d-1"})

    assert not apply(
        collection,
        "d-1",
        S.FAILED,
        at=minutes(1),
        expected=frozenset({S.QUEUED, S.SENDING}),
        attempt=Attempt(1, minutes(1), error="late"),
        provider_message_id="m-1",
    )
    assert not apply(collection, "d-1", S.FAILED, at=minutes(1), expected=frozenset())

    assert collection.find_one({"_id": "d-1"}) == before


def test_transition_update_of_a_missing_delivery_creates_nothing(collection: Collection) -> None:
    assert not apply(collection, "nope", S.SENT, at=minutes(1))
    assert not apply(collection, "nope", S.SENT, at=minutes(1), expected=frozenset(S))

    assert collection.count_documents({}) == 0


def test_transition_update_without_expected_accepts_any_status(collection: Collection) -> None:
    insert(collection, [make_delivery("d-1", status=S.DEAD)])

    assert apply(collection, "d-1", S.QUEUED, at=minutes(1))

    assert stored(collection, "d-1").status is S.QUEUED


def test_transition_updates_record_the_whole_life_of_a_delivery(collection: Collection) -> None:
    insert(collection, [make_delivery("d-1"), make_delivery("d-2")])
    other_before = collection.find_one({"_id": "d-2"})
    sending = frozenset({S.QUEUED, S.FAILED})

    assert apply(
        collection,
        "d-1",
        S.SENDING,
        at=minutes(1),
        expected=sending,
        rendered=Rendered(subject="Welcome", title="Hi", locale="en"),
    )
    assert apply(
        collection,
        "d-1",
        S.FAILED,
        at=minutes(2),
        expected=frozenset({S.SENDING}),
        reason="smtp 451",
        attempt=Attempt(1, minutes(2), provider="smtp", error="451 try later"),
    )
    assert apply(
        collection, "d-1", S.SENDING, at=minutes(3), expected=sending, rendered=Rendered(body="B")
    )
    assert apply(
        collection,
        "d-1",
        S.SENT,
        at=minutes(4),
        expected=frozenset({S.SENDING}),
        attempt=Attempt(2, minutes(4), provider="smtp"),
        provider_message_id="<abc@mail>",
    )
    assert not apply(collection, "d-1", S.SENDING, at=minutes(5), expected=sending)

    record = stored(collection, "d-1")
    assert [(c.status, c.at, c.reason) for c in record.timeline] == [
        (S.QUEUED, T0, None),
        (S.SENDING, minutes(1), None),
        (S.FAILED, minutes(2), "smtp 451"),
        (S.SENDING, minutes(3), None),
        (S.SENT, minutes(4), None),
    ]
    assert record.attempts == [
        Attempt(1, minutes(2), provider="smtp", error="451 try later"),
        Attempt(2, minutes(4), provider="smtp"),
    ]
    assert (record.subject, record.title, record.body, record.locale) == (
        "Welcome",
        "Hi",
        "B",
        "en",
    )
    assert (record.provider_message_id, record.status, record.updated_at) == (
        "<abc@mail>",
        S.SENT,
        minutes(4),
    )
    assert collection.find_one({"_id": "d-2"}) == other_before


# --- count_pipeline -----------------------------------------------------------------------


def test_count_pipeline_counts_per_channel_and_status(collection: Collection) -> None:
    insert(collection, filter_dataset())

    def counts(filter: DeliveryFilter) -> dict[tuple[Channel, DeliveryStatus], int]:
        return counts_from_groups(list(collection.aggregate(count_pipeline(filter))))

    assert counts(DeliveryFilter()) == {
        (Channel.EMAIL, S.SENT): 2,
        (Channel.SMS, S.FAILED): 1,
        (Channel.EMAIL, S.QUEUED): 1,
        (Channel.PUSH, S.SENT): 1,
        (Channel.IN_APP, S.SENT): 1,
        (Channel.EMAIL, S.DEAD): 1,
    }
    assert counts(DeliveryFilter(user_id="u1", until=minutes(6))) == {
        (Channel.EMAIL, S.SENT): 1,
        (Channel.SMS, S.FAILED): 1,
        (Channel.IN_APP, S.SENT): 1,
    }
    assert counts(DeliveryFilter(campaign_id="none")) == {}


# --- add: duplicate ids -------------------------------------------------------------------


def test_a_batch_inserts_one_document_per_id_the_first_given() -> None:
    batch = [
        make_delivery("d-1", subject="first"),
        make_delivery("d-2"),
        make_delivery("d-1", subject="second"),
    ]

    documents = documents_to_insert(batch)

    assert [(d["_id"], d["subject"]) for d in documents] == [("d-1", "first"), ("d-2", None)]
    assert all(d["timeline"] for d in documents)


def test_duplicate_ids_count_as_already_there(collection: Collection) -> None:
    insert(collection, [make_delivery("d-1", subject="first")])
    documents = [
        new_document(make_delivery("d-0")),
        new_document(make_delivery("d-1", subject="second")),
        new_document(make_delivery("d-2")),
    ]

    with pytest.raises(BulkWriteError) as raised:
        collection.insert_many(documents, ordered=False)

    assert inserted_despite_duplicates(raised.value.details) == 2
    assert collection.count_documents({}) == 3
    assert stored(collection, "d-1").subject == "first"


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


def test_the_indexes_match_the_queries_and_expire_old_deliveries(collection: Collection) -> None:
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
