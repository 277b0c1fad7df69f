"""Shared GraphQL types: channels, cursor connections, the JSON scalar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.services.pagination import Page

# Registers the domain enums themselves as the GraphQL enums (strawberry.enum returns the
# class), here where every schema module that uses them imports from.
strawberry.enum(Channel, name="Channel", description="A delivery channel.")
strawberry.enum(DeliveryStatus, name="DeliveryStatus", description="Where a delivery stands.")

__all__ = ["JSON", "Channel", "Connection", "Edge", "PageInfo"]

T = TypeVar("T")
S = TypeVar("S")


@strawberry.type(description="Paging state of a cursor connection.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


# Strawberry names a generic's use after its argument: `Edge[Template]` is `TemplateEdge`
# and `Connection[Template]` is `TemplateConnection`, the names the schema has always had.
@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[S], node: Callable[[S], T], **fields: Any) -> Self:
        """The connection of a service's page, each item shaped into its GraphQL type;
        ``fields`` fill what a subclass adds to a connection."""
        return cls(
            edges=[Edge(cursor=cursor, node=node(item)) for cursor, item in page.items],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
            **fields,
        )
