"""SQLAlchemy's session factory."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def sessionmaker_bind(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine the sessionmaker's sessions are bound to (in tests, a connection).

    Written against SQLAlchemy 2.1: ``async_sessionmaker.kw`` holds the keyword arguments
    it was given, ``bind`` among them; there is no public accessor.
    """
    engine: AsyncEngine = sessionmaker.kw["bind"]
    return engine
