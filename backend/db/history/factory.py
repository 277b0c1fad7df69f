"""Choosing the history store from the settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.db.history.base import HistoryStore
from backend.db.history.mongo import MongoHistoryStore
from backend.db.history.postgres import PostgresHistoryStore


def create_history_store(settings: Settings, engine: AsyncEngine) -> HistoryStore:
    """MongoDB when ``HERALD_HISTORY_URL`` names a MongoDB server, else the PostgreSQL store on
    the application's engine (the embedded default). Call ``start()`` before use."""
    if settings.history_backend == "mongodb" and settings.history_url:
        return MongoHistoryStore(
            settings.history_url, retention_days=settings.history_retention_days
        )
    return PostgresHistoryStore(engine)
