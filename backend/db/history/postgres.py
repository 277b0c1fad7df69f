"""The PostgreSQL history store: the embedded default, one row per delivery.

The store is its own store, not part of a business unit of work: every method runs in its own
short transaction on the engine and commits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Index,
    Interval,
    String,
    Table,
    Text,
    any_,
    delete,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

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
from backend.db.models import Base
from backend.db.raw import Statement, driver_connection


class DeliveryRow(Base):
    """One delivery: a recipient x channel x notification, with its status timeline."""

    __tablename__ = "deliveries"

    # Identifiers compare byte by byte ("C"), whatever the database's collation: ids break
    # ties in the history order, and byte order is the order MongoDB's store uses too.
    id: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text(collation="C"), nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text(collation="C"), nullable=False)
    channel: Mapped[str] = mapped_column(String(20, collation="C"), nullable=False)
    status: Mapped[str] = mapped_column(String(20, collation="C"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    campaign_id: Mapped[str | None] = mapped_column(Text(collation="C"))
    template_slug: Mapped[str | None] = mapped_column(Text)
    locale: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    timeline: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Opens and clicks of an email (open and click tracking), in order: events, not statuses.
    engagements: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    # The event's tenant (backend.services.tenants); null without one. The last column: the
    # batch insert's values follow the table's column order.
    tenant_id: Mapped[str | None] = mapped_column(Text(collation="C"))


# The listing indexes end with (created_at DESC, id DESC), the order of find(), so a page
# is read off the index instead of sorting every matching row: a user's inbox, and a campaign
# with one row per recipient x channel, grow without bound.
_NEWEST_FIRST = (DeliveryRow.created_at.desc(), DeliveryRow.id.desc())
Index("ix_deliveries_user_id_created_at", DeliveryRow.user_id, *_NEWEST_FIRST)
Index("ix_deliveries_event_id", DeliveryRow.event_id)
Index("ix_deliveries_campaign_id", DeliveryRow.campaign_id, *_NEWEST_FIRST)
Index("ix_deliveries_status", DeliveryRow.status)
Index("ix_deliveries_channel_status", DeliveryRow.channel, DeliveryRow.status)
# Unfiltered history pages, and the retention purge, which would otherwise scan the table.
Index("ix_deliveries_created_at", *_NEWEST_FIRST)
# A tenant's history; partial: a single-product install's rows (no tenant) stay out of it.
Index(
    "ix_deliveries_tenant_id_created_at",
    DeliveryRow.tenant_id,
    *_NEWEST_FIRST,
    postgresql_where=DeliveryRow.tenant_id.isnot(None),
)

deliveries: Table = DeliveryRow.__table__  # type: ignore[assignment]

# One statement whatever the batch size: every column travels as one array parameter and
# unnest() zips them back into rows. The SQL text never changes, so asyncpg prepares it once
# per connection and a batch costs no SQL compilation. A VALUES list of 1,000 rows is 20,000
# parameters and a new statement to compile for every batch: measured ~13x slower here.
# JSONB values travel as JSON text: an array of JSON arrays would otherwise be bound as a
# two-dimensional array.
_COLUMNS = [column.name for column in deliveries.columns]
_JSONB_COLUMNS = frozenset(c.name for c in deliveries.columns if isinstance(c.type, JSONB))


def _raw_unnest_argument(column: Column[Any]) -> str:
    # The driver binds parameters with no declared type: each array says what it holds.
    if column.name in _JSONB_COLUMNS:
        return f"CAST(CAST(:{column.name} AS text[]) AS jsonb[])"
    if isinstance(column.type, DateTime):
        return f"CAST(:{column.name} AS timestamptz[])"
    return f"CAST(:{column.name} AS text[])"


# The same insert for the driver connection (the delivery hot path, see backend.db.raw).
_RAW_INSERT = Statement(
    f"INSERT INTO deliveries ({', '.join(_COLUMNS)}) "  # noqa: S608 (column names, not input)
    f"SELECT * FROM unnest({', '.join(_raw_unnest_argument(c) for c in deliveries.columns)}) "
    "ON CONFLICT (id) DO NOTHING"
)
_RAW_GET_MANY = Statement(
    f"SELECT {', '.join(_COLUMNS)} FROM deliveries "  # noqa: S608 (column names, not input)
    "WHERE id = ANY(CAST(:ids AS text[]))"
)


def _json(value: Any) -> str:
    """JSON text for a JSONB column. orjson writes the dataclasses of base.py, their enums and
    their datetimes (RFC 3339, offset kept; a naive one is taken as UTC) natively, and fast:
    ``add`` serializes three values for every row of a batch."""
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC).decode()


def _record_to_values(record: DeliveryRecord) -> tuple[Any, ...]:
    """The record's column values for the batch insert, in the table's column order
    (``_COLUMNS``), JSONB values as JSON text. A tuple, not a dict: ``add`` runs this for
    every row of a 1,000-row batch, and transposing tuples with ``zip`` is the cheap part."""
    return (
        record.id,
        record.event_id,
        record.event_type,
        record.user_id,
        record.channel.value,
        record.status.value,
        as_utc(record.created_at),
        as_utc(record.updated_at),
        record.campaign_id,
        record.template_slug,
        record.locale,
        record.subject,
        record.title,
        record.body,
        _json(record.data),
        _json(initial_timeline(record)),
        _json(record.attempts),
        record.provider_message_id,
        None if record.read_at is None else as_utc(record.read_at),
        None if record.archived_at is None else as_utc(record.archived_at),
        _json(record.engagements),
        record.tenant_id,
    )


def _row_to_record(row: RowMapping) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        user_id=row["user_id"],
        channel=Channel(row["channel"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status=DeliveryStatus(row["status"]),
        campaign_id=row["campaign_id"],
        template_slug=row["template_slug"],
        locale=row["locale"],
        subject=row["subject"],
        title=row["title"],
        body=row["body"],
        data=row["data"],
        timeline=[change_from_stored(c, datetime.fromisoformat) for c in row["timeline"]],
        attempts=[attempt_from_stored(a, datetime.fromisoformat) for a in row["attempts"]],
        provider_message_id=row["provider_message_id"],
        read_at=row["read_at"],
        archived_at=row["archived_at"],
        engagements=[engagement_from_stored(e, datetime.fromisoformat) for e in row["engagements"]],
        tenant_id=row["tenant_id"],
    )


def _conditions(filter: DeliveryFilter) -> list[ColumnElement[bool]]:
    c = deliveries.c
    conditions: list[ColumnElement[bool]] = []
    if filter.user_id is not None:
        conditions.append(c.user_id == filter.user_id)
    if filter.tenant_id is not None:
        conditions.append(c.tenant_id == filter.tenant_id)
    if filter.event_id is not None:
        ids = filter.all_event_ids
        if len(ids) == 1:
            conditions.append(c.event_id == ids[0])
        else:  # one array parameter, however many runs the event started
            conditions.append(c.event_id == any_(literal(list(ids), ARRAY(Text))))
    if filter.campaign_id is not None:
        conditions.append(c.campaign_id == filter.campaign_id)
    if filter.channel is not None:
        conditions.append(c.channel == filter.channel.value)
    if filter.status is not None:
        conditions.append(c.status == filter.status.value)
    if filter.since is not None:
        conditions.append(c.created_at >= as_utc(filter.since))
    if filter.until is not None:
        conditions.append(c.created_at < as_utc(filter.until))
    return conditions


# One UPDATE joined to the ids (and their rendered fields) as arrays, for one delivery or a
# batch; on the driver connection (the delivery hot path, see backend.db.raw).
_TRANSITION = Statement(
    """
    UPDATE deliveries AS d SET
        status = :status,
        updated_at = :at,
        timeline = d.timeline || CAST(:entry AS jsonb),
        attempts = CASE WHEN CAST(:attempt AS jsonb) IS NULL THEN d.attempts
                        ELSE d.attempts || CAST(:attempt AS jsonb) END,
        subject = COALESCE(v.subject, d.subject),
        title = COALESCE(v.title, d.title),
        body = COALESCE(v.body, d.body),
        locale = COALESCE(v.locale, d.locale),
        provider_message_id = COALESCE(CAST(:provider_message_id AS text), d.provider_message_id)
    FROM unnest(CAST(:ids AS text[]), CAST(:subjects AS text[]), CAST(:titles AS text[]),
                CAST(:bodies AS text[]), CAST(:locales AS text[]),
                CAST(:versions AS timestamptz[]))
         AS v(id, subject, title, body, locale, version)
    WHERE d.id = v.id COLLATE "C"
      AND (v.version IS NULL OR d.updated_at = v.version)
      AND (CAST(:expected AS text[]) IS NULL OR d.status = ANY(CAST(:expected AS text[])))
    RETURNING d.id
    """
)


def _scrubbed(column: str, key: str) -> str:
    """SQL for a JSONB array column whose entries' ``key`` (when set) becomes SCRUBBED."""
    # Column and key names of this module, not input.
    return (
        f"(SELECT COALESCE(jsonb_agg(CASE WHEN e->>'{key}' IS NULL THEN e "  # noqa: S608
        f"ELSE jsonb_set(e, '{{{key}}}', to_jsonb(CAST(:scrubbed AS text))) END ORDER BY n), "
        f"'[]'::jsonb) FROM jsonb_array_elements(d.{column}) WITH ORDINALITY AS x(e, n))"
    )


# Forgetting a user (see HistoryStore.scrub_user): one UPDATE over the user's index range.
_SCRUB_USER = Statement(
    "UPDATE deliveries AS d SET user_id = :hashed_id, subject = NULL, title = NULL, "  # noqa: S608
    "body = NULL, data = '{}'::jsonb, provider_message_id = NULL, "
    f"timeline = {_scrubbed('timeline', 'reason')}, attempts = {_scrubbed('attempts', 'error')}, "
    f"engagements = {_scrubbed('engagements', 'url')} "
    "WHERE d.user_id = :user_id"
)

# An open or click: appended to an email delivery's engagements, its status and timeline left
# alone (and its updated_at too: that is the claim's version, see transition_many).
_ADD_ENGAGEMENT = Statement(
    """
    UPDATE deliveries SET engagements = engagements || CAST(:entry AS jsonb)
    WHERE id = :id AND channel = :channel AND jsonb_array_length(engagements) < :most
    RETURNING id
    """
)


def _engagements_of(kind: EngagementKind) -> ColumnElement[int]:
    """How many engagements of ``kind`` a row holds."""
    path: ColumnElement[Any] = literal_column(f"'$[*] ? (@.kind == \"{kind.value}\")'::jsonpath")
    return func.jsonb_array_length(func.jsonb_path_query_array(deliveries.c.engagements, path))


class PostgresHistoryStore(HistoryStore):
    """The history store on PostgreSQL. The engine is the caller's: ``close`` leaves it open."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Every method is one statement: autocommit spares a BEGIN and a COMMIT round trip.
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def start(self) -> None:
        """Nothing to do: the migrations own the table and its indexes."""

    async def close(self) -> None:
        """Nothing to release: the engine is shared with the rest of the process."""

    async def add(self, records: Sequence[DeliveryRecord]) -> int:
        """Insert records whose id is new; existing ids are left untouched. Returns how many
        were inserted. A record without a timeline gets its status at ``created_at``."""
        rows = [_record_to_values(record) for record in unique_by_id(records)]
        if not rows:
            return 0
        params = {
            name: list(values)
            for name, values in zip(_COLUMNS, zip(*rows, strict=True), strict=True)
        }
        async with driver_connection(self.engine) as conn:
            return await _RAW_INSERT.execute(conn, params)

    async def get_many(self, delivery_ids: Sequence[str]) -> list[DeliveryRecord]:
        """Records for the ids that exist, in no particular order."""
        if not delivery_ids:
            return []
        async with driver_connection(self.engine) as conn:
            rows = await _RAW_GET_MANY.fetch(conn, {"ids": list(delivery_ids)})
        return [_row_to_record(row) for row in rows]

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
        """One UPDATE joined to the ids (and their rendered fields) as arrays: a batch of
        deliveries costs one statement and one commit instead of one each, and two workers
        racing on a delivery cannot both win."""
        ids = list(dict.fromkeys(delivery_ids))
        if not ids:
            return set()
        shown = rendered or {}

        def column(name: str) -> list[str | None]:
            return [getattr(shown[i], name) if i in shown else None for i in ids]

        versions = unchanged_since or {}
        params: dict[str, Any] = {
            "ids": ids,
            "versions": [as_utc(versions[i]) if i in versions else None for i in ids],
            "subjects": column("subject"),
            "titles": column("title"),
            "bodies": column("body"),
            "locales": column("locale"),
            "status": status.value,
            "at": as_utc(at),
            "entry": _json([StatusChange(status, at, reason)]),
            "attempt": _json([attempt]) if attempt is not None else None,
            "expected": [s.value for s in sorted(expected)] if expected is not None else None,
            "provider_message_id": provider_message_id,
        }
        async with driver_connection(self.engine) as conn:
            rows = await _TRANSITION.fetch(conn, params)
        return {row[0] for row in rows}

    async def read_newest_first(
        self, filter: DeliveryFilter, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[DeliveryRecord]:
        conditions = _conditions(filter)
        if after is not None:
            created_at, delivery_id = after
            conditions.append(
                tuple_(deliveries.c.created_at, deliveries.c.id)
                < tuple_(literal(created_at, DateTime(timezone=True)), literal(delivery_id))
            )
        stmt = select(deliveries).where(*conditions).order_by(*_NEWEST_FIRST).limit(limit)
        async with self.auto.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_row_to_record(row) for row in rows]

    async def count_by_status(
        self, filter: DeliveryFilter
    ) -> dict[tuple[Channel, DeliveryStatus], int]:
        """Counts per (channel, status) of the records matching ``filter``."""
        c = deliveries.c
        stmt = (
            select(c.channel, c.status, func.count())
            .where(*_conditions(filter))
            .group_by(c.channel, c.status)
        )
        async with self.auto.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {
            (Channel(channel), DeliveryStatus(status)): count for channel, status, count in rows
        }

    async def add_engagement(self, delivery_id: str, engagement: Engagement) -> bool:
        """See :meth:`HistoryStore.add_engagement`: one UPDATE."""
        params = {
            "id": delivery_id,
            "channel": Channel.EMAIL.value,
            "entry": _json([engagement]),
            "most": MAX_ENGAGEMENTS,
        }
        async with driver_connection(self.engine) as conn:
            rows = await _ADD_ENGAGEMENT.fetch(conn, params)
        return bool(rows)

    async def engagement_counts(self, filter: DeliveryFilter) -> EngagementCounts:
        """Opens and clicks of the matching records, in one aggregate."""
        opens = _engagements_of(EngagementKind.OPENED)
        clicks = _engagements_of(EngagementKind.CLICKED)
        stmt = select(
            func.coalesce(func.sum(opens), 0),
            func.count().filter(opens > 0),
            func.coalesce(func.sum(clicks), 0),
            func.count().filter(clicks > 0),
        ).where(*_conditions(filter), deliveries.c.engagements != text("'[]'::jsonb"))
        async with self.auto.connect() as conn:
            row = (await conn.execute(stmt)).one()
        return EngagementCounts(
            opens=int(row[0]), unique_opens=row[1], clicks=int(row[2]), unique_clicks=row[3]
        )

    async def scrub_user(self, user_id: str, hashed_id: str) -> int:
        """See :meth:`HistoryStore.scrub_user`: one statement, in its own transaction."""
        async with driver_connection(self.engine) as conn:
            return await _SCRUB_USER.execute(
                conn, {"user_id": user_id, "hashed_id": hashed_id, "scrubbed": SCRUBBED}
            )

    async def purge_older_than(self, cutoff: datetime, *, batch_size: int = 5000) -> int:
        """Delete the deliveries created before ``cutoff`` (retention). Returns how many.

        Deletes in batches, each in its own transaction, so a large purge neither holds row
        locks for long nor blocks autovacuum behind one huge transaction.
        """
        c = deliveries.c
        doomed = (
            select(c.id).where(c.created_at < as_utc(cutoff)).limit(batch_size).scalar_subquery()
        )
        stmt = delete(deliveries).where(c.id.in_(doomed))
        total = 0
        while True:
            async with self.engine.begin() as conn:
                deleted = (await conn.execute(stmt)).rowcount
            total += deleted
            if deleted < batch_size:
                return total

    async def delivery_stats(self, query: StatsQuery) -> list[StatsRow]:
        """Counts per ``date_bin`` bucket (aligned on ``since``) and ``group_by`` value, in
        one GROUP BY over the ``created_at`` index range."""
        c = deliveries.c
        since = as_utc(query.since)
        values: dict[StatsDimension, ColumnElement[Any]] = {
            StatsDimension.CHANNEL: c.channel,
            StatsDimension.STATUS: c.status,
            StatsDimension.PROVIDER: c.attempts[-1]["provider"].astext,
            StatsDimension.EVENT_TYPE: c.event_type,
            StatsDimension.CAMPAIGN: c.campaign_id,
        }
        columns: list[ColumnElement[Any]] = [
            values[dimension].label(f"k{i}") for i, dimension in enumerate(query.group_by)
        ]
        if query.bucket is not None:
            bucket = func.date_bin(
                literal(query.bucket, Interval()), c.created_at, literal(since, c.created_at.type)
            )
            columns.append(bucket.label("bucket"))
        # Grouped in an outer query: the same bound parameters written twice (in the select
        # list and in GROUP BY) are two parameters to PostgreSQL, which then refuses the group.
        inner = (
            select(*columns, literal(1).label("one"))
            .where(c.created_at >= since, c.created_at < as_utc(query.until))
            .subquery()
        )
        keys = [inner.c[f"k{i}"] for i in range(len(query.group_by))]
        if query.bucket is not None:
            keys.append(inner.c.bucket)
        stmt = select(*keys, func.count()).select_from(inner).group_by(*keys)
        async with self.auto.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        width = len(query.group_by)
        return [
            StatsRow(
                bucket_start=row[width] if query.bucket is not None else None,
                keys=tuple(row[:width]),
                count=row[-1],
            )
            for row in rows
            if row[-1]  # without any key, an empty window still makes one group of 0
        ]
