"""GraphQL types and inputs for topics: named groups of users to send to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

import strawberry

from backend.db.models import Topic as TopicModel
from backend.db.models import TopicMember as TopicMemberModel
from backend.schema.common import Connection
from backend.schema.errors import (
    AccessErrors,
    ConflictError,
    NotFoundError,
    ValidationError,
)


@strawberry.type(description="A user in a topic.")
class TopicMember:
    user_id: strawberry.ID
    added_at: datetime

    @classmethod
    def from_model(cls, row: TopicMemberModel) -> TopicMember:
        return cls(user_id=strawberry.ID(row.user_id), added_at=row.added_at)


@strawberry.type(description="A topic's members, by user id.")
class TopicMemberConnection(Connection[TopicMember]):
    pass


@strawberry.type(
    description=(
        "A named group of users that events and campaigns can target (`topics`). A user in "
        "several targeted topics gets one delivery."
    )
)
class Topic:
    key: str = strawberry.field(description="The topic's name in targeting; never changes.")
    name: str
    description: str
    self_service: bool = strawberry.field(
        description="Users may join and leave it themselves (`subscribeTopic`)."
    )
    created_at: datetime
    updated_at: datetime
    # Read the members when a query asks for them; the resolver that makes the topic gives
    # them, so that this module holds types only and imports no resolver.
    load_count: strawberry.Private[Callable[[], Awaitable[int]]]
    load_members: strawberry.Private[Callable[[int, str | None], Awaitable[TopicMemberConnection]]]

    @strawberry.field(description="How many users are in the topic.")
    async def member_count(self) -> int:
        return await self.load_count()

    @strawberry.field(description="The topic's members, by user id (`first` 1 to 100).")
    async def members(self, first: int = 50, after: str | None = None) -> TopicMemberConnection:
        return await self.load_members(first, after)

    @classmethod
    def from_model(
        cls,
        row: TopicModel,
        load_count: Callable[[], Awaitable[int]],
        load_members: Callable[[int, str | None], Awaitable[TopicMemberConnection]],
    ) -> Topic:
        return cls(
            key=row.key,
            name=row.name,
            description=row.description,
            self_service=row.self_service,
            created_at=row.created_at,
            updated_at=row.updated_at,
            load_count=load_count,
            load_members=load_members,
        )


@strawberry.type(description="Topics, by key.")
class TopicConnection(Connection[Topic]):
    pass


@strawberry.type(description="A self-service topic, and whether you are in it.")
class TopicSubscription:
    topic: Topic
    subscribed: bool


@strawberry.input(description="A new topic.")
class CreateTopicInput:
    key: str = strawberry.field(
        description="1-100 lowercase letters, digits, '_', '.', '-'; a letter or digit first."
    )
    name: str
    description: str = ""
    self_service: bool = strawberry.field(
        default=False, description="Let users join and leave it themselves."
    )


@strawberry.input(description="Changes to a topic: fields left out stay as they are.")
class UpdateTopicInput:
    name: str | None = None
    description: str | None = None
    self_service: bool | None = None


@strawberry.type(description="The topic was deleted, with its memberships.")
class TopicDeleted:
    key: str


@strawberry.type(description="Members added to or removed from a topic.")
class TopicMembersChanged:
    key: str
    changed: int = strawberry.field(
        description="How many users were added (or removed); those already so are not counted."
    )
    member_count: int


TopicResult = Annotated[
    Topic | ValidationError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("TopicResult"),
]
DeleteTopicResult = Annotated[
    TopicDeleted | NotFoundError | AccessErrors,
    strawberry.union("DeleteTopicResult"),
]
TopicMembersResult = Annotated[
    TopicMembersChanged | ValidationError | NotFoundError | AccessErrors,
    strawberry.union("TopicMembersResult"),
]
TopicSubscriptionResult = Annotated[
    TopicSubscription | NotFoundError | AccessErrors,
    strawberry.union("TopicSubscriptionResult"),
]
