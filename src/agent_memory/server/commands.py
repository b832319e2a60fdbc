"""The CLI's commands besides serving: migrate, doctor and the views (none of them loads the MCP SDK)."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from agent_memory import views
from agent_memory.errors import AgentMemoryError
from agent_memory.reindex import ReindexReport
from agent_memory.reindex import reindex as rebuild
from agent_memory.settings import Settings
from agent_memory.store.connect import data_dir, open_database
from agent_memory.store.database import Database
from agent_memory.store.embedded import EmbeddedPostgres
from agent_memory.store.migrate import applied_versions, latest_version
from agent_memory.store.migrate import migrate as apply_migrations
from agent_memory.store.rows import ViewRow

__all__ = [
    "doctor",
    "doctor_command",
    "migrate",
    "reindex",
    "reindex_command",
    "set_view",
    "set_view_command",
    "show_view",
    "show_view_command",
]


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


def _progress_bar(tenant: str, done: int, total: int) -> None:
    """One line on stderr, redrawn: ``reindex local [#######.....] 700/1000``."""
    width = 30
    filled = width * done // total if total else width
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\rreindex {tenant} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
    sys.stderr.flush()


async def reindex(settings: Settings, *, all_tenants: bool, batch: int) -> ReindexReport:
    """Rebuild chunks and caches of the configured tenant, or of every tenant."""
    async with open_database(settings) as db:
        return await rebuild(
            db,
            tenant=None if all_tenants else settings.tenant,
            batch=batch,
            chunk_tokens=settings.chunk_tokens,
            progress=_progress_bar,
        )


async def doctor_command(settings: Settings) -> int:
    """Print the doctor's report as JSON; 1 when something is wrong."""
    report = await doctor(settings)
    print(json.dumps(report, indent=2, default=str))
    return 0 if report.get("ok") else 1


async def reindex_command(settings: Settings, *, all_tenants: bool, batch: int) -> int:
    """Rebuild and say what was rebuilt."""
    report = await reindex(settings, all_tenants=all_tenants, batch=batch)
    print(f"reindexed {report.events} events of {report.tenants} tenant(s) into {report.chunks} chunks")
    return 0


async def set_view_command(settings: Settings, name: str, file: str) -> int:
    """Replace a view from a file (``-`` for stdin) and say its new version."""
    body = sys.stdin.read() if file == "-" else await anyio.Path(file).read_text(encoding="utf-8")
    row = await set_view(settings, name, body)
    print(f"view {row.name} of tenant {settings.tenant} is now version {row.version} ({row.token_est} tokens)")
    return 0


async def show_view_command(settings: Settings, name: str) -> int:
    """Print a view; 1 when it was never written."""
    body = await show_view(settings, name)
    if body is None:
        print(f"agent-memory: view {name} of tenant {settings.tenant} has not been written", file=sys.stderr)
        return 1
    sys.stdout.write(body if body.endswith("\n") else body + "\n")
    return 0
