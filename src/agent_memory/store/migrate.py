"""Numbered SQL migrations (``sql/migrations/NNNN_name.sql``), each applied in one transaction together
with its bookkeeping row, under an advisory lock so that two processes starting at once apply each
migration exactly once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_LOCK_KEY = 7_318_223_001  # pg_advisory_lock key reserved for migrations

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    folder = resources.files("agent_memory.store").joinpath("sql/migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    """The schema version this package expects."""
    return available()[-1].version


async def applied_versions(conn: asyncpg.Connection) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty on a fresh database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    return [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply every pending migration; returns the versions applied by this call."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        done = set(await applied_versions(conn))
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("migration applied", version=migration.version, name=migration.name)
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
