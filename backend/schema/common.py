"""Shared GraphQL types: channels, page info, the JSON scalar."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel

# Registers the domain enum itself as the GraphQL enum (strawberry.enum returns the class).
strawberry.enum(Channel, name="Channel", description="A delivery channel.")

__all__ = ["JSON", "Channel", "PageInfo"]


@strawberry.type(description="Paging state of a cursor connection.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
