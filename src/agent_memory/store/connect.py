"""Open the configured database: the external one named by the settings, or the embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from agent_memory.store.embedded import EmbeddedPostgres, default_data_dir


def data_dir(settings: Settings) -> Path:
    """Where the embedded PostgreSQL lives for these settings."""
    return settings.data_dir or default_data_dir()


@asynccontextmanager
async def open_database(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[Database]:
    """A connected ``Database``, migrated to the current schema; the embedded server is joined (or started)
    first when no URL is configured, and released (stopped, if this was its last user) afterwards."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
    else:
        embedded = EmbeddedPostgres(data_dir(settings))
        dsn = await anyio.to_thread.run_sync(embedded.acquire)
    try:
        db = await Database.connect(
            dsn, min_size=settings.pool_min, max_size=settings.pool_max, run_migrations=run_migrations
        )
        db.slow_queries.threshold = settings.slow_query_ms / 1000
        try:
            yield db
        finally:
            with anyio.CancelScope(shield=True):
                await db.close()
    finally:
        if embedded is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(embedded.release)
