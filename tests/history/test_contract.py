"""The history store contract (backend/db/history/base.py), written once and run against every
store (tests/history/conftest.py ``store``): PostgreSQL, the MongoDB store on mongomock's query
engine, and on a real MongoDB server when HERALD_TEST_MONGODB_URL names one."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.db.history.base import (
    Attempt,
    DeliveryFilter,
    DeliveryRecord,
    DeliveryStatus,
    HistoryStore,
    Rendered,
    StatusChange,
    history_cursor,
)
from backend.db.history.factory import create_history_store
from backend.db.history.mongo import TTL_INDEX, MongoHistoryStore
from backend.db.history.postgres import PostgresHistoryStore, deliveries
from backend.db.models import Base
from backend.errors import ValidationError
from backend.services.pagination import encode_cursor
from tests.conftest import make_settings
from tests.history.conftest import (
    FILTER_CASES,
    MONGODB_URL,
    PAGING_ORDER,
    T0,
    empty_postgres_store,
    filter_dataset,
    full_delivery,
    make_delivery,
    minutes,
    paging_dataset,
)

S = DeliveryStatus

# --- add, get, get_many -------------------------------------------------------------------


async def test_a_record_reads_back_as_it_was_added(store: HistoryStore) -> None:
    record = full_delivery()

    assert await store.add([record]) == 1

    assert await store.get(record.id) == record


async def test_add_starts_the_timeline_with_the_status_at_created_at(store: HistoryStore) -> None:
    queued = make_delivery("d-1", created_at=minutes(1), updated_at=minutes(4))
    skipped = make_delivery("d-2", status=S.SKIPPED, created_at=minutes(2), updated_at=minutes(3))

    assert await store.add([queued, skipped]) == 2

    stored = {r.id: r for r in await store.get_many(["d-1", "d-2"])}
    assert stored["d-1"].timeline == [StatusChange(S.QUEUED, minutes(1))]
    assert stored["d-2"].timeline == [StatusChange(S.SKIPPED, minutes(2))]
    assert queued.timeline == []  # the caller's record is left alone


async def test_adding_an_id_again_keeps_the_first_record(store: HistoryStore) -> None:
    first = make_delivery("d-1", subject="first")
    again = make_delivery("d-1", subject="second", status=S.SENT, created_at=minutes(5))

    assert await store.add([first]) == 1
    assert await store.add([again, make_delivery("d-2")]) == 1

    stored = await store.get("d-1")
    assert stored is not None
    assert (stored.subject, stored.status, stored.created_at) == ("first", S.QUEUED, T0)
    assert {r.id for r in await store.get_many(["d-1", "d-2"])} == {"d-1", "d-2"}


async def test_an_id_twice_in_one_batch_is_inserted_once(store: HistoryStore) -> None:
    first = make_delivery("d-1", subject="first")
    again = make_delivery("d-1", subject="second")

    assert await store.add([first, again, make_delivery("d-2")]) == 2

    stored = await store.get("d-1")
    assert stored is not None and stored.subject == "first"


async def test_adding_nothing_inserts_nothing(store: HistoryStore) -> None:
    assert await store.add([]) == 0


async def test_a_large_batch_is_inserted_whole(store: HistoryStore) -> None:
    batch = [make_delivery(f"b-{i:04d}", created_at=minutes(i)) for i in range(1000)]

    assert await store.add(batch) == 1000
    assert await store.add([*batch[500:], make_delivery("b-new")]) == 1

    page = await store.find(DeliveryFilter(), first=3)
    assert [r.id for r in page.items] == ["b-0999", "b-0998", "b-0997"]


async def test_get_of_an_unknown_id_is_none(store: HistoryStore) -> None:
    assert await store.get("nope") is None


async def test_get_many_returns_the_records_that_exist(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1"), make_delivery("d-2"), make_delivery("d-3")])

    found = await store.get_many(["d-3", "nope", "d-1"])

    assert sorted(r.id for r in found) == ["d-1", "d-3"]
    assert await store.get_many([]) == []


# --- transition ---------------------------------------------------------------------------


async def test_transition_moves_an_expected_status(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1")])

    moved = await store.transition(
        "d-1", S.SENDING, at=minutes(1), expected=frozenset({S.QUEUED}), reason="worker-1"
    )

    assert moved is True
    stored = await store.get("d-1")
    assert stored is not None
    assert stored.status is S.SENDING
    assert stored.updated_at == minutes(1)
    assert stored.timeline == [
        StatusChange(S.QUEUED, T0),
        StatusChange(S.SENDING, minutes(1), reason="worker-1"),
    ]


async def test_transition_refuses_a_status_it_does_not_expect(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1", status=S.SENT)])
    before = await store.get("d-1")

    moved = await store.transition(
        "d-1",
        S.FAILED,
        at=minutes(1),
        expected=frozenset({S.QUEUED, S.SENDING}),
        attempt=Attempt(1, minutes(1), error="late"),
        rendered=Rendered(subject="changed"),
        provider_message_id="m-1",
    )

    assert moved is False
    assert await store.get("d-1") == before


async def test_transition_expecting_no_status_refuses(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1")])

    assert await store.transition("d-1", S.SENT, at=minutes(1), expected=frozenset()) is False
    stored = await store.get("d-1")
    assert stored is not None and stored.status is S.QUEUED


async def test_transition_of_a_missing_delivery_refuses(store: HistoryStore) -> None:
    assert await store.transition("nope", S.SENT, at=minutes(1)) is False
    assert await store.transition("nope", S.SENT, at=minutes(1), expected=frozenset(S)) is False
    assert await store.get("nope") is None


async def test_transition_without_expected_accepts_any_status(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1", status=S.DEAD)])

    assert await store.transition("d-1", S.QUEUED, at=minutes(1), reason="replayed") is True

    stored = await store.get("d-1")
    assert stored is not None
    assert stored.status is S.QUEUED
    assert stored.timeline[-1] == StatusChange(S.QUEUED, minutes(1), reason="replayed")


async def test_transitions_record_the_whole_life_of_a_delivery(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1")])
    sending = frozenset({S.QUEUED, S.FAILED})

    assert await store.transition(
        "d-1",
        S.SENDING,
        at=minutes(1),
        expected=sending,
        rendered=Rendered(subject="Welcome", title="Hi", body=None, locale="en"),
    )
    assert await store.transition(
        "d-1",
        S.FAILED,
        at=minutes(2),
        expected=frozenset({S.SENDING}),
        reason="smtp 451",
        attempt=Attempt(1, minutes(2), provider="smtp", error="451 try later"),
    )
    assert await store.transition(
        "d-1",
        S.SENDING,
        at=minutes(3),
        expected=sending,
        rendered=Rendered(body="Hello Ann"),  # the fields left None keep their values
    )
    assert await store.transition(
        "d-1",
        S.SENT,
        at=minutes(4),
        expected=frozenset({S.SENDING}),
        attempt=Attempt(2, minutes(4), provider="smtp"),
        provider_message_id="<abc@mail>",
    )
    assert not await store.transition("d-1", S.SENDING, at=minutes(5), expected=sending)

    stored = await store.get("d-1")
    assert stored is not None
    assert [(c.status, c.at, c.reason) for c in stored.timeline] == [
        (S.QUEUED, T0, None),
        (S.SENDING, minutes(1), None),
        (S.FAILED, minutes(2), "smtp 451"),
        (S.SENDING, minutes(3), None),
        (S.SENT, minutes(4), None),
    ]
    assert stored.attempts == [
        Attempt(1, minutes(2), provider="smtp", error="451 try later"),
        Attempt(2, minutes(4), provider="smtp"),
    ]
    assert (stored.subject, stored.title, stored.body, stored.locale) == (
        "Welcome",
        "Hi",
        "Hello Ann",
        "en",
    )
    assert stored.provider_message_id == "<abc@mail>"
    assert (stored.status, stored.updated_at, stored.created_at) == (S.SENT, minutes(4), T0)


async def test_transition_changes_only_its_delivery(store: HistoryStore) -> None:
    await store.add([make_delivery("d-1"), make_delivery("d-2")])
    other_before = await store.get("d-2")

    await store.transition("d-1", S.SENT, at=minutes(1), provider_message_id="m")

    assert await store.get("d-2") == other_before


# --- find ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter", "expected"),
    [pytest.param(f, ids, id=name) for name, f, ids in FILTER_CASES],
)
async def test_find_selects_by_every_filter_field(
    store: HistoryStore, filter: DeliveryFilter, expected: list[str]
) -> None:
    await store.add(filter_dataset())

    page = await store.find(filter, first=50)

    assert [r.id for r in page.items] == expected
    assert page.has_next_page is False
    assert page.end_cursor == (history_cursor(page.items[-1]) if page.items else None)


async def test_find_returns_whole_records(store: HistoryStore) -> None:
    record = full_delivery()
    await store.add([record])

    page = await store.find(DeliveryFilter(user_id=record.user_id), first=1)

    assert page.items == [record]


async def test_find_breaks_created_at_ties_by_id_descending(store: HistoryStore) -> None:
    # Byte order: upper case sorts before lower case, "-" before digits.
    ids = ["b", "a", "B", "a-1", "a1", "c"]
    await store.add([make_delivery(i, created_at=T0) for i in ids])
    await store.add([make_delivery("older", created_at=T0 - timedelta(milliseconds=1))])
    await store.add([make_delivery("newer", created_at=T0 + timedelta(milliseconds=1))])

    page = await store.find(DeliveryFilter(), first=10)

    assert [r.id for r in page.items] == ["newer", "c", "b", "a1", "a-1", "a", "B", "older"]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
async def test_pages_cover_every_record_once_in_order(store: HistoryStore, size: int) -> None:
    await store.add(paging_dataset())
    await store.add([make_delivery("someone-else", user_id="other", created_at=minutes(2))])

    seen: list[str] = []
    after = None
    pages = 0
    for _ in PAGING_ORDER:  # a cursor that fails to advance must not loop for ever
        page = await store.find(DeliveryFilter(user_id="pager"), first=size, after=after)
        pages += 1
        assert len(page.items) == min(size, len(PAGING_ORDER) - len(seen))
        seen += [r.id for r in page.items]
        assert page.end_cursor == history_cursor(page.items[-1])
        assert page.has_next_page is (len(seen) < len(PAGING_ORDER))
        if not page.has_next_page:
            break
        after = page.end_cursor
    else:
        pytest.fail(f"paging did not end: {seen}")

    assert seen == PAGING_ORDER
    assert pages == -(-len(PAGING_ORDER) // size)


async def test_paging_keeps_the_filter(store: HistoryStore) -> None:
    await store.add(filter_dataset())
    first = await store.find(DeliveryFilter(status=S.SENT), first=1)
    second = await store.find(DeliveryFilter(status=S.SENT), first=2, after=first.end_cursor)
    third = await store.find(DeliveryFilter(status=S.SENT), first=2, after=second.end_cursor)

    assert [r.id for r in first.items + second.items + third.items] == ["d7", "d5", "d4", "d1"]
    assert (first.has_next_page, second.has_next_page, third.has_next_page) == (True, True, False)


async def test_a_cursor_past_the_end_gives_an_empty_page(store: HistoryStore) -> None:
    await store.add(filter_dataset())
    last = await store.find(DeliveryFilter(), first=7)

    page = await store.find(DeliveryFilter(), first=5, after=last.end_cursor)

    assert (page.items, page.end_cursor, page.has_next_page) == ([], None, False)


async def test_a_cursor_continues_after_its_record_is_gone(store: HistoryStore) -> None:
    await store.add(filter_dataset())
    cursor = history_cursor(make_delivery("d45", created_at=minutes(3)))  # between d5 and d4

    page = await store.find(DeliveryFilter(), first=10, after=cursor)

    assert [r.id for r in page.items] == ["d4", "d3", "d2", "d1"]


async def test_a_cursor_keeps_the_time_window(store: HistoryStore) -> None:
    await store.add(filter_dataset())
    window = DeliveryFilter(since=minutes(1), until=minutes(6))
    after_d5 = history_cursor(make_delivery("d5", created_at=minutes(3)))

    page = await store.find(window, first=10, after=after_d5)

    assert [r.id for r in page.items] == ["d4", "d3", "d2"]


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("%%%", id="not base64"),
        pytest.param("", id="empty"),
        pytest.param(encode_cursor("template", "welcome"), id="another kind"),
        pytest.param(b"\xff\xfe|x".hex(), id="garbage"),
        pytest.param(
            history_cursor(make_delivery("d-1", created_at=T0.replace(tzinfo=None))),
            id="naive timestamp",
        ),
        pytest.param(history_cursor(make_delivery("", created_at=T0)), id="no id"),
    ],
)
async def test_a_bad_cursor_is_a_validation_error(store: HistoryStore, cursor: str) -> None:
    await store.add(filter_dataset())

    with pytest.raises(ValidationError) as raised:
        await store.find(DeliveryFilter(), first=5, after=cursor)

    assert raised.value.field == "after"


async def test_first_must_ask_for_a_record(store: HistoryStore) -> None:
    with pytest.raises(ValidationError) as raised:
        await store.find(DeliveryFilter(), first=0)

    assert raised.value.field == "first"


# --- count_by_status ----------------------------------------------------------------------


async def test_count_by_status_counts_per_channel_and_status(store: HistoryStore) -> None:
    await store.add(filter_dataset())

    assert await store.count_by_status(DeliveryFilter()) == {
        (Channel.EMAIL, S.SENT): 2,
        (Channel.SMS, S.FAILED): 1,
        (Channel.EMAIL, S.QUEUED): 1,
        (Channel.PUSH, S.SENT): 1,
        (Channel.IN_APP, S.SENT): 1,
        (Channel.EMAIL, S.DEAD): 1,
    }
    assert await store.count_by_status(DeliveryFilter(user_id="u1", until=minutes(6))) == {
        (Channel.EMAIL, S.SENT): 1,
        (Channel.SMS, S.FAILED): 1,
        (Channel.IN_APP, S.SENT): 1,
    }
    assert await store.count_by_status(DeliveryFilter(campaign_id="none")) == {}


async def test_count_by_status_follows_transitions(store: HistoryStore) -> None:
    await store.add([make_delivery(f"d-{i}") for i in range(3)])
    await store.transition("d-0", S.SENT, at=minutes(1))

    assert await store.count_by_status(DeliveryFilter(channel=Channel.EMAIL)) == {
        (Channel.EMAIL, S.QUEUED): 2,
        (Channel.EMAIL, S.SENT): 1,
    }


# --- PostgreSQL specifics -----------------------------------------------------------------


@pytest.fixture
async def pg_store(engine: AsyncEngine) -> PostgresHistoryStore:
    return await empty_postgres_store(engine)


async def test_purge_deletes_what_is_older_than_the_cutoff(store: HistoryStore) -> None:
    await store.add([make_delivery(f"d-{i}", created_at=minutes(i)) for i in range(7)])

    assert await store.purge_older_than(minutes(5), batch_size=2) == 5
    assert await store.purge_older_than(minutes(5), batch_size=2) == 0

    page = await store.find(DeliveryFilter(), first=10)
    assert [r.id for r in page.items] == ["d-6", "d-5"]


async def test_scrub_user_keeps_counts_and_removes_what_names_the_user(
    store: HistoryStore,
) -> None:
    kept = dataclasses.replace(full_delivery("d-other"), user_id="u-other")
    await store.add([full_delivery("d-full"), kept, make_delivery("d-2", user_id="u-full")])

    assert await store.scrub_user("u-full", "h-1") == 2
    assert await store.scrub_user("u-full", "h-1") == 0

    scrubbed = await store.get("d-full")
    assert scrubbed is not None
    original = full_delivery("d-full")
    assert scrubbed.user_id == "h-1"
    content = (scrubbed.subject, scrubbed.title, scrubbed.body, scrubbed.data)
    assert content == (None, None, None, {})
    assert scrubbed.provider_message_id is None
    assert [c.reason for c in scrubbed.timeline] == [None, "[removed]", None]
    assert [(a.number, a.provider, a.error) for a in scrubbed.attempts] == [
        (1, "redis", "[removed]"),
        (2, "redis", None),
    ]
    same = ("event_id", "event_type", "channel", "status", "template_slug", "locale",
            "campaign_id", "created_at", "updated_at", "read_at", "archived_at")  # fmt: skip
    assert {n: getattr(scrubbed, n) for n in same} == {n: getattr(original, n) for n in same}
    assert [c.status for c in scrubbed.timeline] == [c.status for c in original.timeline]
    # A clicked URL may carry the user's own identifiers; the events themselves stay counted.
    assert [(e.kind, e.at, e.url) for e in scrubbed.engagements] == [
        (e.kind, e.at, None if e.url is None else "[removed]") for e in original.engagements
    ]
    assert await store.get("d-other") == kept
    assert await store.count_by_status(DeliveryFilter(user_id="h-1")) == {
        (Channel.IN_APP, DeliveryStatus.SENT): 1,
        (Channel.EMAIL, DeliveryStatus.QUEUED): 1,
    }
    assert (await store.find(DeliveryFilter(user_id="u-full"), first=5)).items == []


def test_the_table_has_a_column_for_every_record_field() -> None:
    columns = {c.name for c in deliveries.columns}

    assert columns == {f.name for f in dataclasses.fields(DeliveryRecord)}


async def test_the_migration_creates_the_table_of_the_model(engine: AsyncEngine) -> None:
    def compare(connection: object) -> list[object]:
        context = MigrationContext.configure(
            connection,  # type: ignore[arg-type]
            opts={"compare_type": True, "include_object": _only_deliveries},
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(compare)

    assert differences == []


def _only_deliveries(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # Other tables belong to other migrations; this test answers for the history table only.
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return getattr(table, "name", None) == "deliveries"


# --- MongoDB specifics (with a server) ----------------------------------------------------


async def _mongo_start_is_idempotent_and_moves_the_ttl() -> None:
    import uuid

    assert MONGODB_URL is not None
    name = f"herald_test_history_{uuid.uuid4().hex[:12]}"
    first = MongoHistoryStore(MONGODB_URL, database=name, retention_days=30)
    later = MongoHistoryStore(MONGODB_URL, database=name, retention_days=7)
    try:
        await first.start()
        await first.start()
        await later.start()
        indexes = await later.collection.index_information()
        assert indexes[TTL_INDEX]["expireAfterSeconds"] == 7 * 86_400
        assert {"user_id_created_at", "event_id", "campaign_id_created_at", "status"} <= set(
            indexes
        )
    finally:
        await first.client.drop_database(name)
        await first.close()
        await later.close()


# --- choosing the store -------------------------------------------------------------------


async def test_the_factory_picks_the_store_from_the_settings(engine: AsyncEngine) -> None:
    default = create_history_store(make_settings(), engine)
    mongo = create_history_store(
        make_settings(history_url="mongodb://127.0.0.1:1/history", history_retention_days=9),
        engine,
    )
    try:
        assert isinstance(default, PostgresHistoryStore) and default.engine is engine
        assert isinstance(mongo, MongoHistoryStore)
        assert (mongo.database.name, mongo.retention_days) == ("history", 9)
    finally:
        await mongo.close()


if MONGODB_URL:
    # Collected only where a MongoDB server is reachable (docker compose), never skipped.
    test_mongo_start_is_idempotent_and_moves_the_ttl = _mongo_start_is_idempotent_and_moves_the_ttl


async def test_transition_many_checks_each_delivery_on_its_own(store: HistoryStore) -> None:
    await store.add(
        [
            make_delivery("m-1"),
            make_delivery("m-2"),
            make_delivery("m-3", status=S.SENT),
        ]
    )
    attempt = Attempt(number=1, at=minutes(2), provider="inbox")
    changed = await store.transition_many(
        ["m-1", "m-2", "m-3", "missing"],
        S.SENDING,
        at=minutes(1),
        expected=frozenset({S.QUEUED}),
        reason="claimed",
        attempt=attempt,
        rendered={"m-2": Rendered(title="Hello", body="Body", locale="pt")},
    )
    assert changed == {"m-1", "m-2"}
    one, two, three = [await store.get(i) for i in ("m-1", "m-2", "m-3")]
    assert one is not None and two is not None and three is not None
    assert [c.status for c in one.timeline] == [S.QUEUED, S.SENDING]
    assert one.timeline[-1].reason == "claimed"
    assert one.attempts == [attempt] and one.title is None
    assert (two.title, two.body, two.locale) == ("Hello", "Body", "pt")
    assert three.status is S.SENT and len(three.timeline) == 1
    assert await store.transition_many([], S.SENT, at=minutes(3)) == set()
    # A second claim of the same deliveries finds them no longer queued.
    again = await store.transition_many(
        ["m-1", "m-2"], S.SENDING, at=minutes(3), expected=frozenset({S.QUEUED})
    )
    assert again == set()


async def test_transition_many_unchanged_since_makes_a_takeover_exclusive(
    store: HistoryStore,
) -> None:
    await store.add([make_delivery("t-1", status=S.SENDING, updated_at=minutes(1))])
    [record] = await store.get_many(["t-1"])
    version = {"t-1": record.updated_at}
    first = await store.transition_many(
        ["t-1"], S.SENDING, at=minutes(2), expected=frozenset({S.SENDING}), unchanged_since=version
    )
    second = await store.transition_many(
        ["t-1"], S.SENDING, at=minutes(3), expected=frozenset({S.SENDING}), unchanged_since=version
    )
    assert (first, second) == ({"t-1"}, set())
