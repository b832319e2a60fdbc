"""Migrations: numbered, one transaction each, safe to run from two processes at once, and equal to the
canonical ``schema.sql``."""

from __future__ import annotations

from importlib import resources

import anyio
import asyncpg
import pytest

from agent_memory.store.migrate import available, latest_version, migrate

pytestmark = pytest.mark.anyio

CATALOG = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || udt_name || ' ' || is_nullable || ' '
       || coalesce(column_default, '') || ' ' || coalesce(generation_expression, '')
FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'schema_migrations'
UNION ALL
SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'function ' || proname || '(' || pg_get_function_arguments(oid) || ')'
FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'extension ' || extname FROM pg_extension
UNION ALL
SELECT 'policy ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || coalesce(qual, '') || ' '
       || coalesce(with_check, '') FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT 'grant ' || table_name || ' ' || grantee || ' ' || privilege_type FROM information_schema.role_table_grants
WHERE table_schema = 'public' AND grantee = 'agent_memory_app'
"""


async def _catalog(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return sorted(row[0] for row in await conn.fetch(CATALOG))
    finally:
        await conn.close()


def test_migrations_are_numbered_without_gaps() -> None:
    """Versions run 1, 2, 3 ... and the latest is what the package expects."""
    versions = [m.version for m in available()]
    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() == versions[-1]


async def test_migrations_build_the_canonical_schema(database_url: str, empty_database: str) -> None:
    """A database built from the migrations equals one built from schema.sql, object by object."""
    schema = resources.files("agent_memory.store").joinpath("sql/schema.sql").read_text(encoding="utf-8")
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(schema)
    finally:
        await conn.close()
    migrated, canonical = await _catalog(database_url), await _catalog(empty_database)
    assert migrated == canonical
    assert any(line.startswith("column events.text_hash") for line in migrated)


async def test_two_processes_migrating_at_once_apply_each_version_once(empty_database: str) -> None:
    """Concurrent migrators serialise on an advisory lock: each version is applied exactly once."""
    applied: list[list[int]] = []

    async def run() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            applied.append(await migrate(conn))
        finally:
            await conn.close()

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(run)
    assert sorted(v for versions in applied for v in versions) == [m.version for m in available()]
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(available())
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_no_trace(empty_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails half-way is rolled back with its bookkeeping row: nothing is half-applied."""
    from agent_memory.store import migrate as migrate_module

    broken = [*available(), migrate_module.Migration(9999, "broken", "CREATE TABLE half (x int); SELECT 1/0;")]
    monkeypatch.setattr(migrate_module, "available", lambda: broken)
    conn = await asyncpg.connect(empty_database)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate_module.migrate(conn)
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert 9999 not in [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()


async def test_events_are_append_only(database_url: str) -> None:
    """An UPDATE of an event is refused by the database itself."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO tenants (id) VALUES ('t')")
        await conn.execute(
            "INSERT INTO events (tenant_id, id, session_id, agent_id, kind, channel, sensitivity, text, text_hash,"
            " token_est, original_chars, ts) VALUES ('t', 'evt_1', 's', 'a', 'message', 'team', 'low', 'x', 'h',"
            " 1, 1, now())"
        )
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("UPDATE events SET text = 'y' WHERE id = 'evt_1'")
    finally:
        await conn.close()
