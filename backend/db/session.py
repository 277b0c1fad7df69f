"""Engine and session factory. The request or the task commits, once; services never do."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from backend.config import Settings


def create_engine(settings: Settings, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout: it costs a round trip on every transaction of the hot paths.
        # A connection broken by a database restart fails once and is discarded (SQLAlchemy
        # invalidates the pool on a disconnect error); callers answer UNAVAILABLE or retry.
        pool_pre_ping=False,
        pool_recycle=1800,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
