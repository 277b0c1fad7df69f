"""Shared GraphQL types: channels, page info, the JSON scalar."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus

# Registers the domain enums themselves as the GraphQL enums (strawberry.enum returns the
# class), here where every schema module that uses them imports from.
strawberry.enum(Channel, name="Channel", description="A delivery channel.")
strawberry.enum(DeliveryStatus, name="DeliveryStatus", description="Where a delivery stands.")

__all__ = ["JSON", "Channel", "PageInfo"]


@strawberry.type(description="Paging state of a cursor connection.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
