"""A tenant's row is created by its first write, and asked for only until the process has seen it committed."""

from __future__ import annotations

import pytest

from agent_memory.store.database import Database, Tx

pytestmark = pytest.mark.anyio


async def _audit(tx: Tx) -> None:
    """A row that needs the tenant's (a foreign key)."""
    await tx.audit(principal="p", action="test", resource_ids=[], success=True, latency_ms=1.0, request_id=None)


class Abandoned(Exception):
    pass


async def _abandoned_write(db: Database, *, twice: bool = False) -> None:
    async with db.transaction("fresh") as tx:
        await tx.ensure_tenant()  # inserts the row, which the rollback takes away again
        if twice:
            await tx.ensure_tenant()  # "INSERT 0 0": the row exists, but only in this transaction
        raise Abandoned


async def test_a_tenant_created_by_a_write_that_rolled_back_is_created_again(db: Database) -> None:
    """The rolled-back insert is not taken for a row that exists: the next write creates it."""
    with pytest.raises(Abandoned):
        await _abandoned_write(db)
    async with db.transaction("fresh") as tx:
        await tx.ensure_tenant()
        await _audit(tx)  # the row is there: not taken for known after the rolled-back insert
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tenants WHERE id = 'fresh'") == 1


async def test_a_tenant_seen_committed_is_not_asked_for_again(db: Database) -> None:
    """Once seen, the row is not asked for (so one deleted behind the process's back stays gone), until the
    process is told to forget what it knows (the NOTIFY a restore sends)."""
    for _ in range(2):  # the first creates the row, the second sees it committed
        async with db.transaction("seen") as tx:
            await tx.ensure_tenant()
    async with db.pool.acquire() as conn:  # gone behind the process's back (the product never deletes one)
        await conn.execute("DELETE FROM tenants WHERE id = 'seen'")
    async with db.transaction("seen") as tx:
        await tx.ensure_tenant()  # known: no query, so the row stays gone
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tenants WHERE id = 'seen'") == 0
    db.forget_known_tenants()
    async with db.transaction("seen") as tx:
        await tx.ensure_tenant()
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tenants WHERE id = 'seen'") == 1


async def test_a_row_created_earlier_in_the_same_transaction_is_not_taken_for_known(db: Database) -> None:
    """Asked twice in one transaction that then rolls back, the row is still created by the next write."""
    with pytest.raises(Abandoned):
        await _abandoned_write(db, twice=True)
    async with db.transaction("fresh") as tx:
        await tx.ensure_tenant()
        await _audit(tx)
