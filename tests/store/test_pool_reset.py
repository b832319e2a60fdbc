"""A pooled connection is reset on release unless only a tenant transaction, now ended, used it: its role, tenant,
settings and locks end with it, so the next user of the connection finds none of them either way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from agent_memory.store.database import Database

pytestmark = pytest.mark.anyio


class Abandoned(Exception):
    pass


@pytest.fixture
async def one(database_url: str) -> AsyncIterator[Database]:
    """A pool of one connection: every acquire gets the same one."""
    database = await Database.connect(database_url, min_size=1, max_size=1, run_migrations=False)
    try:
        yield database
    finally:
        await database.close()


async def _last_statement(admin: asyncpg.Connection, pid: int) -> str:
    """What the backend ``pid`` ran last (it is idle: the pool holds it)."""
    query: str = await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
    return query.strip()


async def _session(one: Database) -> tuple[int, str, str, str]:
    """The backend's pid, its role, its tenant ("": none; NULL until a transaction has set one) and lock timeout."""
    async with one.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT pg_backend_pid() AS pid, current_user AS who, current_setting('agent_memory.tenant', true) AS"
            " tenant, current_setting('lock_timeout') AS lock_timeout"
        )
        assert row is not None
        return row["pid"], row["who"], row["tenant"] or "", row["lock_timeout"]


async def test_after_a_tenant_transaction_the_reset_is_skipped_and_nothing_is_left(
    one: Database, database_url: str
) -> None:
    """A plain use is reset on release; a tenant transaction's commit is the last thing its connection ran, and
    its role, tenant and lock timeout are gone all the same."""
    pid, login, _, lock_timeout = await _session(one)
    admin = await asyncpg.connect(database_url)
    try:
        assert "RESET ALL" in await _last_statement(admin, pid)  # a plain use is reset on release
        async with one.transaction("reset-a", writes=True) as tx:
            await tx.ensure_tenant()
        assert await _last_statement(admin, pid) == "COMMIT;"  # no reset query followed
        # the role, the tenant and the write's lock timeout ended with the transaction
        assert await _session(one) == (pid, login, "", lock_timeout)
    finally:
        await admin.close()


async def _abandoned(one: Database) -> None:
    async with one.transaction("reset-b") as tx:
        await tx.ensure_tenant()
        raise Abandoned


async def test_a_connection_used_otherwise_is_reset(one: Database, database_url: str) -> None:
    """A session setting made outside a tenant transaction, and a tenant transaction that failed, are reset."""
    pid, login, _, lock_timeout = await _session(one)
    async with one.pool.acquire() as conn:
        await conn.execute("SET lock_timeout = '7s'")  # a session setting, outside any tenant transaction
    assert await _session(one) == (pid, login, "", lock_timeout)
    with pytest.raises(Abandoned):
        await _abandoned(one)
    admin = await asyncpg.connect(database_url)
    try:
        assert "RESET ALL" in await _last_statement(admin, pid)  # a transaction that failed: reset all the same
    finally:
        await admin.close()
    assert await _session(one) == (pid, login, "", lock_timeout)
