"""The MongoDB history store: one document per delivery in ``deliveries``, ``_id`` = its id.

Every filter, sort, update and pipeline is built by a pure function of this module, so the
tests run them against mongomock's query engine without a server; the store itself only
sends them.

BSON dates hold milliseconds: datetimes are truncated to the millisecond on the way in, so a
record read back equals the record written only when its datetimes are whole milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.errors import BulkWriteError, OperationFailure

from backend.channels import Channel
from backend.db.history.base import (
    MAX_ENGAGEMENTS,
    Attempt,
    DeliveryFilter,
    DeliveryRecord,
    DeliveryStatus,
    Engagement,
    EngagementCounts,
    EngagementKind,
    HistoryStore,
    Rendered,
    StatsDimension,
    StatsQuery,
    StatsRow,
    StatusChange,
)
from backend.db.history.records import (
    SCRUBBED,
    as_utc,
    attempt_from_stored,
    change_from_stored,
    engagement_from_stored,
    initial_timeline,
    unique_by_id,
)

COLLECTION = "deliveries"
DEFAULT_DATABASE = "herald"
TTL_INDEX = "created_at_ttl"
DUPLICATE_KEY = 11000
INDEX_OPTIONS_CONFLICT = 85

Document = dict[str, Any]


def bson_datetime(value: datetime) -> datetime:
    """``value`` as MongoDB stores it: UTC, truncated to the millisecond."""
    utc = as_utc(value)
    return utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000)


def _optional_datetime(value: datetime | None) -> datetime | None:
    return None if value is None else bson_datetime(value)


def change_to_document(change: StatusChange) -> Document:
    """A timeline entry as stored."""
    return {"status": change.status.value, "at": bson_datetime(change.at), "reason": change.reason}


def attempt_to_document(attempt: Attempt) -> Document:
    """An attempt as stored."""
    return {
        "number": attempt.number,
        "at": bson_datetime(attempt.at),
        "provider": attempt.provider,
        "error": attempt.error,
    }


def engagement_to_document(engagement: Engagement) -> Document:
    """An open or click as stored."""
    return {
        "kind": engagement.kind.value,
        "at": bson_datetime(engagement.at),
        "url": engagement.url,
    }


def record_to_document(record: DeliveryRecord) -> Document:
    """The document for ``record``, exactly as given (see :func:`new_document` for ``add``)."""
    document: Document = {
        "_id": record.id,
        "event_id": record.event_id,
        "event_type": record.event_type,
        "user_id": record.user_id,
        "channel": record.channel.value,
        "status": record.status.value,
        "created_at": bson_datetime(record.created_at),
        "updated_at": bson_datetime(record.updated_at),
        "campaign_id": record.campaign_id,
        "template_slug": record.template_slug,
        "locale": record.locale,
        "subject": record.subject,
        "title": record.title,
        "body": record.body,
        "data": dict(record.data),
        "timeline": [change_to_document(change) for change in record.timeline],
        "attempts": [attempt_to_document(attempt) for attempt in record.attempts],
        "provider_message_id": record.provider_message_id,
        "read_at": _optional_datetime(record.read_at),
        "archived_at": _optional_datetime(record.archived_at),
        "engagements": [engagement_to_document(e) for e in record.engagements],
    }
    if record.tenant_id is not None:
        # Only when set: a single-product install's documents keep the shape they had.
        document["tenant_id"] = record.tenant_id
    return document


def new_document(record: DeliveryRecord) -> Document:
    """The document ``add`` inserts: the record, its timeline starting with its status at
    ``created_at`` when it came without one."""
    document = record_to_document(record)
    document["timeline"] = [change_to_document(change) for change in initial_timeline(record)]
    return document


def documents_to_insert(records: Sequence[DeliveryRecord]) -> list[Document]:
    """The documents ``add`` inserts for a batch: one per id, the first record given winning
    (an unordered insert_many promises no order, so the batch's own duplicates go first)."""
    return [new_document(record) for record in unique_by_id(records)]


def _read_datetime(value: datetime | None) -> datetime | None:
    # A client without tz_aware (mongomock's default) hands back naive UTC datetimes.
    return None if value is None else as_utc(value)


def document_to_record(document: Mapping[str, Any]) -> DeliveryRecord:
    """The record a stored document holds. Optional fields may be absent from the document."""
    return DeliveryRecord(
        id=document["_id"],
        event_id=document["event_id"],
        event_type=document["event_type"],
        user_id=document["user_id"],
        channel=Channel(document["channel"]),
        created_at=as_utc(document["created_at"]),
        updated_at=as_utc(document["updated_at"]),
        status=DeliveryStatus(document["status"]),
        campaign_id=document.get("campaign_id"),
        template_slug=document.get("template_slug"),
        locale=document.get("locale"),
        subject=document.get("subject"),
        title=document.get("title"),
        body=document.get("body"),
        data=dict(document.get("data") or {}),
        timeline=[change_from_stored(c, as_utc) for c in document.get("timeline") or []],
        attempts=[attempt_from_stored(a, as_utc) for a in document.get("attempts") or []],
        provider_message_id=document.get("provider_message_id"),
        read_at=_read_datetime(document.get("read_at")),
        archived_at=_read_datetime(document.get("archived_at")),
        engagements=[engagement_from_stored(e, as_utc) for e in document.get("engagements") or []],
        tenant_id=document.get("tenant_id"),
    )


def find_filter(filter: DeliveryFilter, after: tuple[datetime, str] | None = None) -> Document:
    """The query for records matching every set field of ``filter`` that come after the
    position ``after`` = (created_at, id) in the newest-first order of :func:`sort_spec`."""
    query: Document = {}
    if filter.user_id is not None:
        query["user_id"] = filter.user_id
    if filter.tenant_id is not None:
        query["tenant_id"] = filter.tenant_id
    if filter.event_id is not None:
        ids = filter.all_event_ids
        query["event_id"] = ids[0] if len(ids) == 1 else {"$in": list(ids)}
    if filter.campaign_id is not None:
        query["campaign_id"] = filter.campaign_id
    if filter.channel is not None:
        query["channel"] = filter.channel.value
    if filter.status is not None:
        query["status"] = filter.status.value
    created_at: Document = {}
    if filter.since is not None:
        created_at["$gte"] = bson_datetime(filter.since)
    if filter.until is not None:
        created_at["$lt"] = bson_datetime(filter.until)
    if created_at:
        query["created_at"] = created_at
    if after is not None:
        after_at, after_id = bson_datetime(after[0]), after[1]
        query["$or"] = [
            {"created_at": {"$lt": after_at}},
            {"created_at": after_at, "_id": {"$lt": after_id}},
        ]
    return query


def sort_spec() -> list[tuple[str, int]]:
    """Newest first: ``created_at`` descending, then ``_id`` (the delivery id) descending."""
    return [("created_at", -1), ("_id", -1)]


def transition_update(
    delivery_id: str,
    status: DeliveryStatus,
    *,
    at: datetime,
    expected: frozenset[DeliveryStatus] | None = None,
    reason: str | None = None,
    attempt: Attempt | None = None,
    rendered: Rendered | None = None,
    provider_message_id: str | None = None,
) -> tuple[Document, Document]:
    """(filter, update) for one ``update_one`` that moves a delivery to ``status`` only if its
    status is in ``expected`` (any when None). Rendered fields that are None are left as
    they are."""
    query: Document = {"_id": delivery_id}
    if expected is not None:
        query["status"] = {"$in": sorted(s.value for s in expected)}
    changes: Document = {"status": status.value, "updated_at": bson_datetime(at)}
    if rendered is not None:
        for name in ("subject", "title", "body", "locale"):
            value = getattr(rendered, name)
            if value is not None:
                changes[name] = value
    if provider_message_id is not None:
        changes["provider_message_id"] = provider_message_id
    pushes: Document = {"timeline": change_to_document(StatusChange(status, at, reason))}
    if attempt is not None:
        pushes["attempts"] = attempt_to_document(attempt)
    return query, {"$set": changes, "$push": pushes}


def engagement_update(delivery_id: str, engagement: Engagement) -> tuple[Document, Document]:
    """(filter, update) appending an open or click to an email delivery that holds fewer than
    ``MAX_ENGAGEMENTS``; its status, timeline and ``updated_at`` are left alone."""
    query: Document = {
        "_id": delivery_id,
        "channel": Channel.EMAIL.value,
        f"engagements.{MAX_ENGAGEMENTS - 1}": {"$exists": False},
    }
    return query, {"$push": {"engagements": engagement_to_document(engagement)}}


def _engagements_of(kind: EngagementKind) -> Document:
    return {
        "$size": {
            "$filter": {
                "input": {"$ifNull": ["$engagements", []]},
                "as": "e",
                "cond": {"$eq": ["$$e.kind", kind.value]},
            }
        }
    }


def engagement_pipeline(filter: DeliveryFilter) -> list[Document]:
    """The aggregation counting the opens and clicks of the records matching ``filter``."""
    return [
        {"$match": {**find_filter(filter), "engagements.0": {"$exists": True}}},
        {
            "$project": {
                "opens": _engagements_of(EngagementKind.OPENED),
                "clicks": _engagements_of(EngagementKind.CLICKED),
            }
        },
        {
            "$group": {
                "_id": None,
                "opens": {"$sum": "$opens"},
                "unique_opens": {"$sum": {"$cond": [{"$gt": ["$opens", 0]}, 1, 0]}},
                "clicks": {"$sum": "$clicks"},
                "unique_clicks": {"$sum": {"$cond": [{"$gt": ["$clicks", 0]}, 1, 0]}},
            }
        },
    ]


def engagement_counts_from(groups: Sequence[Mapping[str, Any]]) -> EngagementCounts:
    """The result of :func:`engagement_pipeline` (no group when nothing matched)."""
    if not groups:
        return EngagementCounts()
    group = groups[0]
    return EngagementCounts(
        opens=int(group["opens"]),
        unique_opens=int(group["unique_opens"]),
        clicks=int(group["clicks"]),
        unique_clicks=int(group["unique_clicks"]),
    )


def count_pipeline(filter: DeliveryFilter) -> list[Document]:
    """The aggregation counting the records matching ``filter`` per (channel, status)."""
    return [
        {"$match": find_filter(filter)},
        {
            "$group": {
                "_id": {"channel": "$channel", "status": "$status"},
                "count": {"$sum": 1},
            }
        },
    ]


def counts_from_groups(
    groups: Sequence[Mapping[str, Any]],
) -> dict[tuple[Channel, DeliveryStatus], int]:
    """The result of :func:`count_pipeline` as ``count_by_status`` returns it."""
    return {
        (Channel(group["_id"]["channel"]), DeliveryStatus(group["_id"]["status"])): group["count"]
        for group in groups
    }


def scrub_filter(user_id: str) -> Document:
    """The query for a user's deliveries, as forgetting them finds them."""
    return {"user_id": user_id}


def _scrub_entries(entries: Sequence[Mapping[str, Any]] | None, key: str) -> list[Document]:
    return [
        {**entry, key: SCRUBBED} if entry.get(key) is not None else dict(entry)
        for entry in entries or []
    ]


def scrub_update(document: Mapping[str, Any], hashed_id: str) -> tuple[Document, Document]:
    """(filter, update) forgetting the user of one stored delivery (see
    ``HistoryStore.scrub_user``). The filter still names the user, so a document scrubbed
    meanwhile by a concurrent call is not scrubbed (nor counted) twice."""
    changes: Document = {
        "user_id": hashed_id,
        "subject": None,
        "title": None,
        "body": None,
        "data": {},
        "provider_message_id": None,
        "timeline": _scrub_entries(document.get("timeline"), "reason"),
        "attempts": _scrub_entries(document.get("attempts"), "error"),
        "engagements": _scrub_entries(document.get("engagements"), "url"),
    }
    return {"_id": document["_id"], "user_id": document["user_id"]}, {"$set": changes}


def purge_filter(cutoff: datetime) -> Document:
    """The query for the deliveries created before ``cutoff`` (retention)."""
    return {"created_at": {"$lt": bson_datetime(cutoff)}}


def index_models(retention_days: int) -> list[IndexModel]:
    """The collection's indexes. Listing indexes end with (created_at, _id) descending, the
    order of :func:`sort_spec`, so a page is read off the index rather than sorted in memory;
    the TTL index, last, expires deliveries ``retention_days`` after they were created (none
    when ``retention_days`` is 0: kept forever)."""
    newest_first = [("created_at", -1), ("_id", -1)]
    return [
        IndexModel([("user_id", 1), *newest_first], name="user_id_created_at"),
        IndexModel([("event_id", 1)], name="event_id"),
        IndexModel([("campaign_id", 1), *newest_first], name="campaign_id_created_at"),
        IndexModel([("status", 1)], name="status"),
        IndexModel([("channel", 1), ("status", 1)], name="channel_status"),
        IndexModel(newest_first, name="created_at_id"),
        # A tenant's history (callers bound to a tenant); sparse: documents without a tenant
        # (every one of a single-product install) are left out of it.
        IndexModel([("tenant_id", 1), *newest_first], name="tenant_id_created_at", sparse=True),
        *(
            [
                IndexModel(
                    [("created_at", 1)], name=TTL_INDEX, expireAfterSeconds=retention_days * 86_400
                )
            ]
            if retention_days
            else []
        ),
    ]


def inserted_despite_duplicates(details: Mapping[str, Any]) -> int | None:
    """How many documents an unordered ``insert_many`` inserted, from its BulkWriteError
    details, when every error is a duplicate id (a record that is already there); None when
    any other error happened, since those records were not stored."""
    errors = details.get("writeErrors") or []
    if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
        return None
    return int(details.get("nInserted", 0))


class MongoHistoryStore(HistoryStore):
    """The history store on MongoDB, through PyMongo's async client."""

    def __init__(self, url: str, *, database: str | None = None, retention_days: int) -> None:
        self.retention_days = retention_days
        # tz_aware: datetimes come back as aware UTC, like the PostgreSQL store's.
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True)
        self.database = (
            self.client[database]
            if database
            else self.client.get_default_database(default=DEFAULT_DATABASE)
        )
        self.collection = self.database[COLLECTION]

    async def start(self) -> None:
        """Create the indexes; idempotent. A changed retention updates the TTL in place."""
        models = index_models(self.retention_days)
        if not self.retention_days:
            await self.collection.create_indexes(models)
            if TTL_INDEX in await self.collection.index_information():
                await self.collection.drop_index(TTL_INDEX)
            return
        ttl = models.pop()
        await self.collection.create_indexes(models)
        try:
            await self.collection.create_indexes([ttl])
        except OperationFailure as exc:
            if exc.code != INDEX_OPTIONS_CONFLICT:
                raise
            # The index exists with another expireAfterSeconds: dropping and rebuilding it
            # would leave a window with no retention, collMod changes it in place.
            await self.database.command(
                {
                    "collMod": COLLECTION,
                    "index": {
                        "name": TTL_INDEX,
                        "expireAfterSeconds": self.retention_days * 86_400,
                    },
                }
            )

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self.client.close()

    async def add(self, records: Sequence[DeliveryRecord]) -> int:
        """Insert records whose id is new; existing ids are left untouched. Returns how many
        were inserted. A record without a timeline gets its status at ``created_at``."""
        documents = documents_to_insert(records)
        if not documents:
            return 0
        try:
            result = await self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            inserted = inserted_despite_duplicates(exc.details)
            if inserted is None:
                raise
            return inserted
        return len(result.inserted_ids)

    async def get_many(self, delivery_ids: Sequence[str]) -> list[DeliveryRecord]:
        """Records for the ids that exist, in no particular order."""
        if not delivery_ids:
            return []
        cursor = self.collection.find({"_id": {"$in": list(delivery_ids)}})
        return [document_to_record(document) for document in await cursor.to_list()]

    async def transition_many(
        self,
        delivery_ids: Sequence[str],
        status: DeliveryStatus,
        *,
        at: datetime,
        expected: frozenset[DeliveryStatus] | None = None,
        reason: str | None = None,
        attempt: Attempt | None = None,
        rendered: dict[str, Rendered] | None = None,
        unchanged_since: dict[str, datetime] | None = None,
        provider_message_id: str | None = None,
    ) -> set[str]:
        """Each delivery's own conditional update, sent concurrently: MongoDB reports matches
        per operation only for single updates, and each must be checked on its own. The status
        check and the change are atomic on each document."""
        ids = list(dict.fromkeys(delivery_ids))
        shown = rendered or {}
        versions = unchanged_since or {}

        async def one(delivery_id: str) -> bool:
            filter_doc, update_doc = transition_update(
                delivery_id,
                status,
                at=at,
                expected=expected,
                reason=reason,
                attempt=attempt,
                rendered=shown.get(delivery_id),
                provider_message_id=provider_message_id,
            )
            if delivery_id in versions:
                filter_doc["updated_at"] = bson_datetime(versions[delivery_id])
            result = await self.collection.update_one(filter_doc, update_doc)
            return result.matched_count == 1

        results = await asyncio.gather(*(one(i) for i in ids))
        return {i for i, changed in zip(ids, results, strict=True) if changed}

    async def read_newest_first(
        self, filter: DeliveryFilter, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[DeliveryRecord]:
        cursor = self.collection.find(find_filter(filter, after)).sort(sort_spec()).limit(limit)
        return [document_to_record(document) for document in await cursor.to_list()]

    async def count_by_status(
        self, filter: DeliveryFilter
    ) -> dict[tuple[Channel, DeliveryStatus], int]:
        """Counts per (channel, status) of the records matching ``filter``."""
        cursor = await self.collection.aggregate(count_pipeline(filter))
        return counts_from_groups(await cursor.to_list())

    async def add_engagement(self, delivery_id: str, engagement: Engagement) -> bool:
        """See :meth:`HistoryStore.add_engagement`: one conditional ``$push``."""
        result = await self.collection.update_one(*engagement_update(delivery_id, engagement))
        return result.matched_count == 1

    async def engagement_counts(self, filter: DeliveryFilter) -> EngagementCounts:
        """Opens and clicks, by :func:`engagement_pipeline`."""
        cursor = await self.collection.aggregate(engagement_pipeline(filter))
        return engagement_counts_from(await cursor.to_list())

    async def scrub_user(self, user_id: str, hashed_id: str) -> int:
        """See :meth:`HistoryStore.scrub_user`. Each document's arrays are rewritten from what
        was read (:func:`scrub_update`), one conditional update each."""
        documents = await self.collection.find(scrub_filter(user_id)).to_list()

        async def one(document: Document) -> int:
            result = await self.collection.update_one(*scrub_update(document, hashed_id))
            return int(result.modified_count)

        return sum(await asyncio.gather(*(one(document) for document in documents)))

    async def purge_older_than(self, cutoff: datetime, *, batch_size: int = 5000) -> int:
        """Delete the deliveries created before ``cutoff``. The TTL index does this on its own
        when retention is set; this is for an explicit cutoff. ``batch_size`` is unused:
        MongoDB deletes document by document, yielding between them."""
        result = await self.collection.delete_many(purge_filter(cutoff))
        return int(result.deleted_count)

    async def delivery_stats(self, query: StatsQuery) -> list[StatsRow]:
        """Counts per bucket and ``group_by`` value, by :func:`stats_pipeline`."""
        cursor = await self.collection.aggregate(stats_pipeline(query))
        return stats_rows(await cursor.to_list(), query)


# The value each stats dimension groups by. The last attempt's provider is the one that
# decided the delivery's outcome (an earlier one may have failed over to it).
_STATS_VALUES: dict[StatsDimension, Any] = {
    StatsDimension.CHANNEL: "$channel",
    StatsDimension.STATUS: "$status",
    StatsDimension.PROVIDER: {"$arrayElemAt": ["$attempts.provider", -1]},
    StatsDimension.EVENT_TYPE: "$event_type",
    StatsDimension.CAMPAIGN: "$campaign_id",
}


def stats_pipeline(query: StatsQuery) -> list[Document]:
    """The aggregation behind ``delivery_stats``. A bucket starts at ``created_at`` minus its
    distance from ``since`` modulo the bucket size: PostgreSQL's ``date_bin`` with ``since``
    as origin, exactly (``$dateTrunc`` aligns bins on fixed epochs instead of ``since``)."""
    since = bson_datetime(query.since)
    group: Document = {dimension.value: _STATS_VALUES[dimension] for dimension in query.group_by}
    if query.bucket is not None:
        size = int(query.bucket.total_seconds() * 1000)
        group["bucket"] = {
            "$subtract": ["$created_at", {"$mod": [{"$subtract": ["$created_at", since]}, size]}]
        }
    return [
        {"$match": {"created_at": {"$gte": since, "$lt": bson_datetime(query.until)}}},
        {"$group": {"_id": group, "count": {"$sum": 1}}},
    ]


def stats_rows(groups: Sequence[Mapping[str, Any]], query: StatsQuery) -> list[StatsRow]:
    """The result of :func:`stats_pipeline` as ``delivery_stats`` returns it. A value missing
    from a group's ``_id`` (no attempt yet, no campaign) is None. Groups of 0 (an engine may
    group an empty input into one) are left out."""
    return [
        StatsRow(
            bucket_start=None if query.bucket is None else as_utc(group["_id"]["bucket"]),
            keys=tuple(group["_id"].get(dimension.value) for dimension in query.group_by),
            count=group["count"],
        )
        for group in groups
        if group["count"]
    ]
