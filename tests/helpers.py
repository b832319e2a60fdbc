"""Small helpers shared by tests: reading the store directly to prove what was (not) written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from agent_memory.store.database import TABLES, Database

# a failed call is still audited (and its tenant registered; a signed one's signature is spent)
BOOKKEEPING = ("tenants", "audit_log", "request_signatures")


async def row_counts(db: Database) -> dict[str, int]:
    """Rows per table of memory data (what a failed call must not have written): all but the bookkeeping."""
    async with db.pool.acquire() as conn:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES if table not in BOOKKEEPING
        }


async def database_text(db: Database) -> str:
    """Every row of every table, as text: what a search of the whole database would see."""
    async with db.pool.acquire() as conn:
        parts = []
        for table in TABLES:
            rows = await conn.fetch(f"SELECT t::text AS row FROM {table} t")
            parts.extend(row["row"] for row in rows)
        return "\n".join(parts)


async def until_a_lock_is_awaited(db: Database, locktype: str | None = None) -> None:
    """Return once some transaction waits for a lock (of ``locktype``, e.g. ``advisory``, when given)."""
    with anyio.fail_after(10):
        while True:
            async with db.pool.acquire() as conn:
                if await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND ($1::text IS NULL OR locktype = $1)", locktype
                ):
                    return
            await anyio.sleep(0.02)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call ``tool`` and return its structured result, failing the test on a tool error."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call ``tool`` expecting a tool error; returns its message."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"expected an error, got {result.structured_content}"
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


EXECUTABLE = str(Path(sys.executable).parent / "agent-memory")


def run_cli(
    database_url: str | None, *args: str, stdin: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """``agent-memory ARGS`` in a process of its own whose only settings are the database URL (when given) and
    ``env`` (full ``AGENT_MEMORY_*`` names): none of the test run's own leak in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    if database_url:
        clean["AGENT_MEMORY_DATABASE_URL"] = database_url
    clean.update(env)
    return subprocess.run(
        [EXECUTABLE, *args], input=stdin, capture_output=True, text=True, env=clean, timeout=timeout, check=False
    )
