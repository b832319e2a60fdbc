"""The ``handoff_packet`` tool: packets stored pending, every named id checked in the caller's tenant."""

from __future__ import annotations

import pytest
from mcp import Client

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, call_error, row_counts

pytestmark = pytest.mark.anyio


async def test_packet_is_stored_pending_with_everything_it_names(client: Client, db: Database) -> None:
    """A packet with decisions, files, questions and refs is stored pending for the receiving agent."""
    event = (await call(client, "remember", text="We must keep the API stable."))["events"][0]["id"]
    decision = (await call(client, "remember", text="Freeze the v1 API.", kind="decision", refs=[event]))["events"][0][
        "decision_id"
    ]
    out = await call(
        client,
        "handoff_packet",
        to_agent="agent-b",
        task="Write the v1 API docs",
        constraints=["no breaking changes"],
        decision_ids=[decision],
        required_files=["docs/api.md"],
        open_questions=["who reviews?"],
        refs=[event],
        session_id="docs",
    )
    assert out["id"].startswith("hnd_")
    assert out["status"] == "pending"
    assert out["from_agent"] == "agent-a"
    assert out["to_agent"] == "agent-b"
    async with db.transaction("local") as tx:
        stored = await tx.get_handoff(out["id"])
    assert stored is not None
    assert stored.decision_ids == [decision]
    assert stored.refs == [event]
    assert stored.required_files == ["docs/api.md"]


async def test_unknown_superseded_and_foreign_ids_are_refused(client: Client, db: Database, settings: Settings) -> None:
    """Each id must exist in the tenant and a named decision must be active; a refusal writes nothing."""
    d1 = (await call(client, "remember", text="Old rule.", kind="decision"))["events"][0]["decision_id"]
    d2 = (await call(client, "supersede_decision", decision_id=d1, text="New rule."))["decision"]["id"]
    other = settings.model_copy(update={"tenant": "other"})
    async with make_client(db, other) as other_client:
        foreign = (await call(other_client, "remember", text="theirs"))["events"][0]["id"]
    before = await row_counts(db)
    superseded = await call_error(client, "handoff_packet", to_agent="b", task="t", decision_ids=[d1])
    assert "decision_ids[0]" in superseded
    assert d2 in superseded
    assert "not_found" in await call_error(client, "handoff_packet", to_agent="b", task="t", refs=[foreign])
    malformed = await call_error(client, "handoff_packet", to_agent="b", task="t", decision_ids=["D-1"])
    assert "decision_ids[0]" in malformed
    blank = await call_error(client, "handoff_packet", to_agent="b", task="   ")
    assert "task: is empty" in blank
    assert await row_counts(db) == before


async def test_secrets_in_a_packet_are_redacted(client: Client, db: Database) -> None:
    """A token pasted into the task is redacted before the packet is stored."""
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    out = await call(client, "handoff_packet", to_agent="b", task=f"Deploy with token {secret}")
    assert secret not in out["task"]
    assert out["redactions"]
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM handoffs WHERE task LIKE '%' || $1 || '%'", secret) == 0
