"""Topic resolvers. Managing topics and reading them: admins and managers. Adding and
removing members: also services (the auth or billing service keeps a topic in step with its
own data). Joining and leaving a self-service topic: any user, for themselves."""

from __future__ import annotations

from typing import Any, Protocol

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal, Role
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.topics import (
    CreateTopicInput,
    DeleteTopicResult,
    Topic,
    TopicConnection,
    TopicDeleted,
    TopicMember,
    TopicMemberConnection,
    TopicMembersChanged,
    TopicMembersResult,
    TopicResult,
    TopicSubscription,
    TopicSubscriptionResult,
    UpdateTopicInput,
)
from backend.services import topics as topic_service

Info = strawberry.Info[Context, Any]


class _MembersChange(Protocol):
    async def __call__(
        self, session: AsyncSession, *, actor: Principal, key: str, user_ids: list[str]
    ) -> int: ...


MANAGE_TOPICS = MANAGE_TEMPLATES
MANAGE_MEMBERS = frozenset({Role.ADMIN, Role.MANAGER, Role.SERVICE})
READ_MEMBERSHIPS = frozenset({Role.ADMIN, Role.MANAGER})


def _topic(info: Info, row: topic_service.Topic) -> Topic:
    """The GraphQL topic, reading its members only when the query asks for them."""
    key = row.key

    async def load_count() -> int:
        async def work(session: AsyncSession, _: Principal) -> int:
            return await topic_service.member_count(session, key=key)

        return await read(info, MANAGE_MEMBERS, work)

    async def load_members(first: int, after: str | None) -> TopicMemberConnection:
        async def work(session: AsyncSession, _: Principal) -> TopicMemberConnection:
            page = await topic_service.list_members(session, key=key, first=first, after=after)
            return TopicMemberConnection.from_page(page, TopicMember.from_model)

        return await read(info, MANAGE_MEMBERS, work)

    return Topic.from_model(row, load_count, load_members)


def _choice(info: Info, choice: topic_service.TopicChoice) -> TopicSubscription:
    return TopicSubscription(topic=_topic(info, choice.topic), subscribed=choice.subscribed)


@strawberry.field(description="Topics by key; `search` matches key or name. Admins, managers.")
async def topics(
    info: Info, search: str | None = None, first: int = 50, after: str | None = None
) -> TopicConnection:
    async def work(session: AsyncSession, _: Principal) -> TopicConnection:
        page = await topic_service.list_topics(session, search=search, first=first, after=after)
        return TopicConnection.from_page(page, lambda row: _topic(info, row))

    return await read(info, MANAGE_MEMBERS, work)


@strawberry.field(description="A topic by key, with its members; null when there is none.")
async def topic(info: Info, key: str) -> Topic | None:
    async def work(session: AsyncSession, _: Principal) -> Topic | None:
        row = await topic_service.get_topic(session, key=key)
        return _topic(info, row) if row is not None else None

    return await read(info, MANAGE_MEMBERS, work)


@strawberry.field(description="The topics a user is in, by key. Admins, managers.")
async def topics_of(info: Info, user_id: strawberry.ID) -> list[Topic]:
    async def work(session: AsyncSession, _: Principal) -> list[Topic]:
        rows = await topic_service.memberships_of(session, user_id=str(user_id))
        return [_topic(info, row) for row in rows]

    return await read(info, READ_MEMBERSHIPS, work)


@strawberry.field(description="The topics you may join yourself, and whether you are in them.")
async def my_topics(info: Info) -> list[TopicSubscription]:
    async def work(session: AsyncSession, actor: Principal) -> list[TopicSubscription]:
        return [_choice(info, c) for c in await topic_service.my_topics(session, actor=actor)]

    return await read(info, None, work)


@strawberry.mutation(description="Create a topic. Admins, managers.")
async def create_topic(info: Info, input: CreateTopicInput) -> TopicResult:
    data = topic_service.TopicData(
        key=input.key,
        name=input.name,
        description=input.description,
        self_service=input.self_service,
    )

    async def work(session: AsyncSession, actor: Principal) -> Topic:
        return _topic(info, await topic_service.create_topic(session, actor=actor, data=data))

    return await mutate(info, MANAGE_TOPICS, work)  # type: ignore[return-value]


@strawberry.mutation(description="Change a topic's name, description or self-service.")
async def update_topic(info: Info, key: str, input: UpdateTopicInput) -> TopicResult:
    patch = topic_service.TopicPatch(
        name=input.name, description=input.description, self_service=input.self_service
    )

    async def work(session: AsyncSession, actor: Principal) -> Topic:
        row = await topic_service.update_topic(session, actor=actor, key=key, patch=patch)
        return _topic(info, row)

    return await mutate(info, MANAGE_TOPICS, work)  # type: ignore[return-value]


@strawberry.mutation(description="Delete a topic and its memberships. Admins, managers.")
async def delete_topic(info: Info, key: str) -> DeleteTopicResult:
    async def work(session: AsyncSession, actor: Principal) -> TopicDeleted:
        return TopicDeleted(key=await topic_service.delete_topic(session, actor=actor, key=key))

    return await mutate(info, MANAGE_TOPICS, work)  # type: ignore[return-value]


@strawberry.mutation(
    description=(
        "Add up to 1000 users to a topic (those in it already are left as they are). "
        "Admins, managers, services."
    )
)
async def add_to_topic(info: Info, key: str, user_ids: list[str]) -> TopicMembersResult:
    return await _change_members(info, topic_service.add_to_topic, key, user_ids)


@strawberry.mutation(
    description=(
        "Remove up to 1000 users from a topic (those not in it are ignored). "
        "Admins, managers, services."
    )
)
async def remove_from_topic(info: Info, key: str, user_ids: list[str]) -> TopicMembersResult:
    return await _change_members(info, topic_service.remove_from_topic, key, user_ids)


async def _change_members(
    info: Info, change: _MembersChange, key: str, user_ids: list[str]
) -> TopicMembersResult:
    """Add or remove members, answering how many changed and how many the topic has now."""

    async def work(session: AsyncSession, actor: Principal) -> TopicMembersChanged:
        changed = await change(session, actor=actor, key=key, user_ids=user_ids)
        count = await topic_service.member_count(session, key=key)
        return TopicMembersChanged(key=key, changed=changed, member_count=count)

    return await mutate(info, MANAGE_MEMBERS, work)  # type: ignore[return-value]


@strawberry.mutation(description="Join a self-service topic yourself (FORBIDDEN otherwise).")
async def subscribe_topic(info: Info, key: str) -> TopicSubscriptionResult:
    async def work(session: AsyncSession, actor: Principal) -> TopicSubscription:
        return _choice(info, await topic_service.subscribe_topic(session, actor=actor, key=key))

    return await mutate(info, None, work)  # type: ignore[return-value]


@strawberry.mutation(description="Leave a self-service topic yourself (FORBIDDEN otherwise).")
async def unsubscribe_topic(info: Info, key: str) -> TopicSubscriptionResult:
    async def work(session: AsyncSession, actor: Principal) -> TopicSubscription:
        return _choice(info, await topic_service.unsubscribe_topic(session, actor=actor, key=key))

    return await mutate(info, None, work)  # type: ignore[return-value]


Query = create_type("Query", [topics, topic, topics_of, my_topics])
Mutation = create_type(
    "Mutation",
    [
        create_topic,
        update_topic,
        delete_topic,
        add_to_topic,
        remove_from_topic,
        subscribe_topic,
        unsubscribe_topic,
    ],
)
