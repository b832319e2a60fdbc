"""`reindex` drops and rebuilds every chunk from events; recall returns the same bundles afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from agent_memory.reindex import reindex
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, row_counts

pytestmark = pytest.mark.anyio

QUERIES = ["which database do we use", "billing refactor", "release schedule"]


async def _seed(client: Client) -> None:
    long_text = "\n\n".join(
        f"Section {i}. The billing refactor moves rounding into one place. " * 10 for i in range(12)
    )
    await call(client, "remember", text=long_text, session_id="s")
    await call(client, "remember", text="We use PostgreSQL 18 for everything.", kind="decision")
    await call(
        client,
        "remember",
        session_id="s",
        events=[{"text": f"Release schedule note {i}: ship on Thursday {i}."} for i in range(40)],
    )
    await call(client, "remember", text="We use PostgreSQL 18 for everything.", session_id="s")


async def _bundles(client: Client) -> list[dict[str, object]]:
    out = []
    for query in QUERIES:
        bundle = await call(client, "recall", query=query, session_id="s", budget_tokens=4000)
        out.append({k: bundle[k] for k in ("sections", "omissions", "conflicts", "token_used_est")})
    return out


async def test_reindex_rebuilds_the_same_chunks_and_bundles(client: Client, db: Database, settings: Settings) -> None:
    """After dropping every chunk and reindexing in small batches, the chunk count and the bundles match."""
    await _seed(client)
    before_counts = await row_counts(db)
    before = await _bundles(client)
    async with db.pool.acquire() as conn:
        await conn.execute("DELETE FROM chunks")
    progress: list[tuple[str, int, int]] = []
    report = await reindex(db, tenant="local", batch=7, progress=lambda t, d, n: progress.append((t, d, n)))
    assert report.events == before_counts["events"]
    assert report.chunks == before_counts["chunks"]
    assert await row_counts(db) == before_counts
    assert progress[-1] == ("local", before_counts["events"], before_counts["events"])
    assert len(progress) == -(-before_counts["events"] // 7)
    async with make_client(db, settings) as restarted:
        assert await _bundles(restarted) == before


def test_reindex_command_shows_progress(database_url: str) -> None:
    """`agent-memory reindex` prints a progress bar on stderr and a summary on stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env["AGENT_MEMORY_DATABASE_URL"] = database_url
    result = subprocess.run(
        [str(Path(sys.executable).parent / "agent-memory"), "reindex", "--all-tenants"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "reindexed 0 events of 0 tenant(s)" in result.stdout
