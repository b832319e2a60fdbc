"""Per-tenant retention: `retention set` and `retention purge` forget what is older, keeping what must stay."""

from __future__ import annotations

import json

import pytest

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, run_cli

pytestmark = pytest.mark.anyio

LONG_AGO = "2021-03-01T10:00:00Z"


async def test_purge_forgets_what_is_past_retention_and_keeps_what_must_stay(database_url: str, db: Database) -> None:
    """Old events go; recent, pinned, active-decision events, updates of open tasks and an original repeated
    recently stay; a tenant without a retention keeps everything; the receipt says what went."""
    async with make_client(db, Settings(database_url=database_url, tenant="acme")) as client:
        old = await call(client, "remember", text="The old office was on Elm Street.", at=LONG_AGO)
        pinned = await call(client, "remember", text="Founding charter, keep forever.", at=LONG_AGO, pinned=True)
        decided = await call(client, "remember", text="We bill in euros.", kind="decision", at=LONG_AGO)
        repeated = await call(client, "remember", text="Standup is at nine.", at=LONG_AGO)
        await call(client, "remember", text="Standup is at nine.")  # a recent duplicate keeps its original
        fresh = await call(client, "remember", text="The new office is on Oak Avenue.")
        task = {"title": "Renew the lease"}
        open_task = await call(client, "remember", text="lease", kind="task_update", task=task, at=LONG_AGO)
    async with make_client(db, Settings(database_url=database_url, tenant="globex")) as client:
        theirs = await call(client, "remember", text="Globex keeps its archive.", at=LONG_AGO)

    assert run_cli(database_url, "retention", "set", "--tenant", "acme", "--days", "365", timeout=120).returncode == 0
    assert "365 days" in run_cli(database_url, "retention", "show", "--tenant", "acme", timeout=120).stdout
    purged = run_cli(database_url, "retention", "purge", "--all-tenants", timeout=120)
    assert purged.returncode == 0, purged.stderr
    receipts = json.loads(purged.stdout)
    assert list(receipts) == ["acme"]
    assert receipts["acme"]["events"] == 1

    assert await db.tables_containing("Elm Street") == []
    async with db.transaction("acme") as tx:
        for kept in (pinned, decided, repeated, fresh, open_task):
            assert await tx.get_event(kept["events"][0]["id"]) is not None
        assert await tx.get_event(old["events"][0]["id"]) is None
    async with db.transaction("globex") as tx:
        assert await tx.get_event(theirs["events"][0]["id"]) is not None

    assert run_cli(database_url, "retention", "set", "--tenant", "acme", "--forever", timeout=120).returncode == 0
    nothing = run_cli(database_url, "retention", "purge", "--tenant", "acme", timeout=120)
    assert json.loads(nothing.stdout) == {"acme": None}
    refused = run_cli(database_url, "retention", "set", "--tenant", "acme", "--days", "0", timeout=120)
    assert refused.returncode == 1
    assert "--days" in refused.stderr
