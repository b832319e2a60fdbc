"""`agent-memory backup` and `restore`: the whole database out with pg_dump and back with pg_restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, run_cli

pytestmark = pytest.mark.anyio


async def test_a_backup_restores_what_was_forgotten_since(database_url: str, db: Database, tmp_path: Path) -> None:
    """Back up, forget everything, restore: the events, their decisions and row-level security are back."""
    async with make_client(db, Settings(database_url=database_url, tenant="acme")) as client:
        kept = await call(client, "remember", text="The vault combination is kept offline.", kind="decision")
    file = tmp_path / "memory.dump"
    dumped = run_cli(database_url, "backup", str(file), timeout=300)
    assert dumped.returncode == 0, dumped.stderr
    assert file.stat().st_size > 0

    async with make_client(db, Settings(database_url=database_url, tenant="acme")) as client:
        await call(client, "forget", everything=True)
    async with db.transaction("acme") as tx:
        assert await tx.count_events() == 0

    refused = run_cli(database_url, "restore", str(file), timeout=300)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    restored = run_cli(database_url, "restore", str(file), "--yes", timeout=300)
    assert restored.returncode == 0, restored.stderr
    async with db.transaction("acme") as tx:
        event = await tx.get_event(kept["events"][0]["id"])
        decision = await tx.get_decision(kept["events"][0]["decision_id"])
    assert event is not None
    assert decision is not None
    async with db.transaction("globex") as tx:
        assert await tx.get_event(kept["events"][0]["id"]) is None  # row-level security came back too

    missing = run_cli(database_url, "restore", str(tmp_path / "nope.dump"), "--yes", timeout=300)
    assert missing.returncode == 1
    assert "nope.dump" in missing.stderr
