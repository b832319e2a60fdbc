"""The audit trail: its rows written by group commit, its export (JSON lines, from a time on) and retention (purge)
from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import anyio
import asyncpg
import pytest
from mcp import Client

from agent_memory import audit
from agent_memory.caller import Caller
from agent_memory.store.database import Database
from agent_memory.store.rows import AuditEntry
from tests.helpers import call, run_cli, until_a_lock_is_awaited

pytestmark = pytest.mark.anyio


async def _age_rows(db: Database, tenant: str, days: int) -> None:
    """Move every audit row of ``tenant`` ``days`` into the past (as the login user: the server cannot)."""
    async with db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE audit_log SET at = at - make_interval(days => $2) WHERE tenant_id = $1", tenant, days
        )


async def test_export_prints_the_tenants_rows_as_json_lines_since_a_time(
    database_url: str, db: Database, client: Client
) -> None:
    """Every tool call is a row; export prints one JSON object per line, oldest first, only of --tenant,
    only from --since on; the export itself is audited."""
    written = await call(client, "remember", text="the release is on friday")
    await call(client, "recall", query="release")
    await _age_rows(db, "local", 10)
    await call(client, "recall", query="friday")

    everything = run_cli(database_url, "audit", "export", "--tenant", "local")
    assert everything.returncode == 0, everything.stderr
    rows = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [row["action"] for row in rows] == ["remember", "recall", "recall"]
    assert rows[0]["resource_ids"] == [written["events"][0]["id"]]
    assert {row["tenant_id"] for row in rows} == {"local"}
    assert all(row["success"] and row["latency_ms"] >= 0 for row in rows)

    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    recent = run_cli(database_url, "audit", "export", "--tenant", "local", "--since", since)
    actions = [json.loads(line)["action"] for line in recent.stdout.splitlines()]
    assert actions == ["recall", "audit_export"]

    assert run_cli(database_url, "audit", "export", "--tenant", "globex").stdout == ""
    bad = run_cli(database_url, "audit", "export", "--since", "last tuesday")
    assert bad.returncode == 1
    assert "--since" in bad.stderr
    assert "ISO 8601" in bad.stderr


async def test_purge_deletes_rows_older_than_the_retention(database_url: str, db: Database, client: Client) -> None:
    """Rows older than AGENT_MEMORY_AUDIT_RETENTION_DAYS go, younger ones stay; 0 keeps everything."""
    await call(client, "recall", query="old")
    await _age_rows(db, "local", 40)
    await call(client, "recall", query="new")

    kept = run_cli(database_url, "audit", "purge", AGENT_MEMORY_AUDIT_RETENTION_DAYS="0")
    assert kept.returncode == 0, kept.stderr
    assert "nothing purged" in kept.stdout

    purged = run_cli(database_url, "audit", "purge", AGENT_MEMORY_AUDIT_RETENTION_DAYS="30")
    assert purged.returncode == 0, purged.stderr
    assert "deleted 1 audit rows" in purged.stdout
    async with db.pool.acquire() as conn:
        left = await conn.fetch("SELECT action, detail FROM audit_log ORDER BY id")
    assert [row["action"] for row in left] == ["recall", "audit_purge"]
    assert left[1]["detail"]["deleted"] == 1

    flag = run_cli(database_url, "audit", "purge", "--older-than-days", "-3")
    assert flag.returncode == 1
    assert "--older-than-days" in flag.stderr


async def test_rows_of_calls_ending_together_are_committed_together(db: Database) -> None:
    """Group commit: forty calls ending at once, in two tenants, each get their row, committed when ``record``
    returns, in far fewer transactions than rows, whatever their tenants; a call ending alone has its row written
    at once, by itself."""
    written: list[int] = []

    async def one(tenant: str, index: int) -> None:
        await audit.record(
            db, Caller(tenant=tenant, agent_id="a"), "test", success=True, latency_ms=1.0, request_id=str(index)
        )
        async with db.pool.acquire() as conn:  # committed: another connection sees it
            assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE request_id = $1", str(index)) == 1
        written.append(index)

    async with anyio.create_task_group() as group:
        for index in range(40):
            group.start_soon(one, ("acme", "globex")[index % 2], index)
    assert sorted(written) == list(range(40))
    await one("acme", 40)
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT tenant_id, request_id, xmin::text AS tx FROM audit_log ORDER BY id")
    assert len(rows) == 41
    for tenant, indexes in (("acme", range(0, 41, 2)), ("globex", range(1, 40, 2))):
        assert sorted(int(r["request_id"]) for r in rows if r["tenant_id"] == tenant) == list(indexes)
    transactions = {r["tx"] for r in rows}
    assert len(transactions) < 20  # one per row would be 41
    # one transaction holds rows of both tenants, each inserted as its own (row-level security checked them)
    assert any({r["tenant_id"] for r in rows if r["tx"] == tx} == {"acme", "globex"} for tx in transactions)
    assert {r["tx"] for r in rows if r["request_id"] == "40"}.isdisjoint({r["tx"] for r in rows[:-1]})


async def _rows(db: Database) -> dict[str, str]:
    """request id -> tenant of every audit row."""
    async with db.pool.acquire() as conn:
        return {r["request_id"]: r["tenant_id"] for r in await conn.fetch("SELECT * FROM audit_log")}


def _entry(request_id: str, **detail: str) -> AuditEntry:
    return AuditEntry("p", "test", [], success=True, latency_ms=1.0, request_id=request_id, detail=detail)


async def test_a_row_the_database_refuses_fails_only_its_own_call(db: Database) -> None:
    """In a batch with a row the database refuses (a NUL character in its detail), the other rows, of any
    tenant, are written all the same; only the call whose row it was gets the error."""
    errors: dict[str, Exception] = {}

    async def one(tenant: str, request_id: str, note: str = "") -> None:
        try:
            await db.audit_trail.append(tenant, _entry(request_id, note=note))
        except Exception as exc:  # collected to be checked below
            errors[request_id] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(one, "acme", "good-1")
        group.start_soon(one, "globex", "bad", "\u0000")
        group.start_soon(one, "globex", "good-2")
        group.start_soon(one, "acme", "good-3")
    assert list(errors) == ["bad"]
    assert await _rows(db) == {"good-1": "acme", "good-2": "globex", "good-3": "acme"}


async def test_a_cancelled_call_leaves_the_others_rows_and_the_trail_working(db: Database, database_url: str) -> None:
    """While a batch waits on the database, a call waiting for its turn is cancelled: its row is not written,
    the others' are once the database answers, the call writing the batch is not stopped by its own
    cancellation, and the trail goes on writing."""
    blocker = await asyncpg.connect(database_url)  # holds the new tenant's row: the batch creating it waits
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("INSERT INTO tenants (id) VALUES ('slow')")
    try:
        async with anyio.create_task_group() as group:
            writing = anyio.CancelScope()
            waiting = anyio.CancelScope()

            async def leader() -> None:
                with writing:
                    await db.audit_trail.append("slow", _entry("leader"))

            async def follower(scope: anyio.CancelScope, request_id: str) -> None:
                with scope:
                    await db.audit_trail.append("acme", _entry(request_id))

            group.start_soon(leader)
            await until_a_lock_is_awaited(db)  # the batch waits on the blocker's row
            group.start_soon(follower, waiting, "cancelled")
            group.start_soon(follower, anyio.CancelScope(), "kept")
            await anyio.wait_all_tasks_blocked()
            waiting.cancel()
            writing.cancel()
            await anyio.wait_all_tasks_blocked()
            await transaction.rollback()  # the database answers: the tenant row is the batch's to create
    finally:
        await blocker.close()
    assert await _rows(db) == {"leader": "slow", "kept": "acme"}
    await db.audit_trail.append("acme", _entry("after"))
    assert "after" in await _rows(db)
