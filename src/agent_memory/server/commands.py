"""The CLI's commands besides serving: migrate, doctor and the views (none of them loads the MCP SDK)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from agent_memory import views
from agent_memory.errors import AgentMemoryError
from agent_memory.settings import Settings
from agent_memory.store.connect import data_dir, open_database
from agent_memory.store.database import Database
from agent_memory.store.embedded import EmbeddedPostgres
from agent_memory.store.migrate import applied_versions, latest_version
from agent_memory.store.migrate import migrate as apply_migrations
from agent_memory.store.rows import ViewRow

__all__ = ["doctor", "migrate", "set_view", "show_view"]


async def migrate(settings: Settings) -> int:
    """Apply pending migrations and say which."""
    async with open_database(settings, run_migrations=False) as db, db.pool.acquire() as conn:
        applied = await apply_migrations(conn)
        current = await applied_versions(conn)
    done = ", ".join(str(v) for v in applied) if applied else "none pending"
    print(f"migrations applied: {done}; schema version {max(current, default=0)}")
    return 0


def _redacted_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def doctor(settings: Settings) -> dict[str, Any]:
    """Where the data lives, which database, which schema version, what is running."""
    report: dict[str, Any] = {"tenant": settings.tenant, "expected_schema_version": latest_version()}
    if settings.database_url is not None:
        report["database"] = {"kind": "external", "url": _redacted_url(settings.database_url.get_secret_value())}
    else:
        status = await anyio.to_thread.run_sync(EmbeddedPostgres(data_dir(settings)).status)
        report["database"] = {
            "kind": "embedded",
            "data_dir": str(status.data_dir),
            "pgdata": str(status.pgdata),
            "initialized": status.initialized,
            "running": status.running,
            "postmaster_pid": status.pid,
            "processes_using_it": status.handles,
            "postgres_version": status.postgres_version,
        }
    try:
        async with open_database(settings, run_migrations=False) as db:
            report.update(await _schema_report(db))
    except AgentMemoryError as exc:
        report.update({"ok": False, "problem": exc.message})
    return report


async def _schema_report(db: Database) -> dict[str, Any]:
    applied, expected = await db.schema_status()
    async with db.pool.acquire() as conn:
        server_version = await conn.fetchval("SHOW server_version")
        has_vector = await conn.fetchval("SELECT count(*) > 0 FROM pg_extension WHERE extname = 'vector'")
    current = max(applied, default=0)
    return {
        "ok": current == expected,
        "schema_version": current,
        "server_version": server_version,
        "pgvector": bool(has_vector),
        **({} if current == expected else {"problem": "schema is behind: run `agent-memory migrate`"}),
    }


async def set_view(settings: Settings, name: str, body: str) -> ViewRow:
    """Replace a view of the configured tenant."""
    async with open_database(settings) as db:
        return await views.set_view(db, settings.tenant, name, body, updated_by="cli")


async def show_view(settings: Settings, name: str) -> str | None:
    """The body of a view of the configured tenant, or None when it was never written."""
    async with open_database(settings) as db:
        row = await views.get_view(db, settings.tenant, name)
    return None if row is None else row.body
