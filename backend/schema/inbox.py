"""GraphQL types for the in-app inbox and the live streams."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.schema.common import Connection
from backend.schema.deliveries import DeliveryFields
from backend.schema.errors import (
    AccessErrors,
    ValidationError,
)
from backend.services.inbox import InboxEntry
from backend.services.live import DeliveryChange


@strawberry.type(
    description="A button on an in-app notification: a link (`url`, a web page or a path of "
    "the app) or a named action (`name`) the app handles."
)
class NotificationAction:
    label: str
    url: str | None = None
    name: str | None = None

    @classmethod
    def from_json(cls, action: dict[str, str]) -> NotificationAction:
        return cls(label=action["label"], url=action.get("url"), name=action.get("name"))


@strawberry.input(
    description="An in-app action: a `label` (a template) and a `url` (a template starting "
    "with https://, http:// or /) or a `name` the app handles (`herald-action` on the inbox "
    "element)."
)
class NotificationActionInput:
    label: str
    url: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, str]:
        action = {"label": self.label}
        if self.url is not None:
            action["url"] = self.url
        if self.name is not None:
            action["name"] = self.name
        return action


@strawberry.type(description="An in-app notification in the caller's inbox.")
class Notification:
    id: strawberry.ID = strawberry.field(description="The delivery id.")
    cursor: str = strawberry.field(
        description="Pass as `since` (subscription) or `after` (inbox) to resume after this item."
    )
    event_id: strawberry.ID
    event_type: str
    title: str | None
    body: str | None
    data: JSON
    created_at: datetime
    read: bool
    read_at: datetime | None
    archived: bool = strawberry.field(
        description="Archived: a replayed item (`since`) archived while the client was away."
    )
    archived_at: datetime | None
    actions: list[NotificationAction] = strawberry.field(
        description="The primary and secondary action, when the template gives them."
    )

    @classmethod
    def from_entry(cls, entry: InboxEntry) -> Notification:
        return cls(
            id=strawberry.ID(entry.delivery_id),
            cursor=entry.cursor,
            event_id=strawberry.ID(entry.event_id),
            event_type=entry.event_type,
            title=entry.title,
            body=entry.body,
            data=entry.data,  # type: ignore[arg-type]
            created_at=entry.created_at,
            read=entry.read_at is not None,
            read_at=entry.read_at,
            archived=entry.archived_at is not None,
            archived_at=entry.archived_at,
            actions=[NotificationAction.from_json(a) for a in entry.actions],
        )


@strawberry.type(description="Items read or archived, on this device or another one.")
class ReadStateChange:
    ids: list[strawberry.ID]
    read: bool
    archived: bool


InboxUpdate = Annotated[Notification | ReadStateChange, strawberry.union("InboxUpdate")]


@strawberry.type(description="The inbox, newest first.")
class NotificationConnection(Connection[Notification]):
    position: str = strawberry.field(
        description=(
            "The inbox's position when this page was read: the cursor of your newest item, "
            "archived ones included, even when the inbox is empty. Pass it as the "
            "subscription's `since` to receive every item stored after this read, none lost "
            "(items already on this page may come again: skip them by `id`)."
        )
    )


@strawberry.type
class InboxChange:
    ids: list[strawberry.ID] = strawberry.field(description="The items that changed.")
    unread_count: int


InboxChangeResult = Annotated[
    InboxChange | ValidationError | AccessErrors,
    strawberry.union("InboxChangeResult"),
]


@strawberry.type(description="A delivery changed status (the admin page's live feed).")
class DeliveryUpdate(DeliveryFields):
    at: datetime
    reason: str | None
    sequence: int | None = strawberry.field(
        default=None,
        description=(
            "The change's place in its delivery's timeline (1, 2, ...), as in status "
            "webhooks: changes can arrive out of order, the highest is the latest."
        ),
    )

    @classmethod
    def from_change(cls, change: DeliveryChange) -> DeliveryUpdate:
        return cls(
            **DeliveryFields.of(change),
            at=change.at,
            reason=change.reason,
            sequence=change.sequence,
        )


@strawberry.input(description="Every field given must match.")
class DeliveryUpdateFilter:
    event_id: strawberry.ID | None = None
    campaign_id: strawberry.ID | None = None
    user_id: strawberry.ID | None = None
    channel: Channel | None = None
    status: DeliveryStatus | None = None
