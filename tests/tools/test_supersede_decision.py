"""The ``supersede_decision`` tool: chains kept, never overwritten, one transaction."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, call_error, row_counts

pytestmark = pytest.mark.anyio


async def _decision(client: Client, text: str, **extra: object) -> tuple[str, str]:
    receipt = (await call(client, "remember", text=text, kind="decision", **extra))["events"][0]
    return receipt["decision_id"], receipt["id"]


async def test_supersede_links_both_ways_and_cites_the_old_decision(client: Client, db: Database) -> None:
    """D2 supersedes D1: D1 is kept as superseded pointing at D2; D2 refs D1 and its source event."""
    d1, _ = await _decision(client, "The ACB budget is 32K tokens.", decision={"scope": "recall"})
    source = (await call(client, "remember", text="Benchmarks show 65K fits the models we use."))["events"][0]["id"]
    out = await call(
        client,
        "supersede_decision",
        decision_id=d1,
        text="The ACB budget is 65K tokens.",
        rationale="benchmarks",
        refs=[source],
    )
    d2 = out["decision"]["id"]
    assert out["decision"]["status"] == "active"
    assert out["decision"]["supersedes"] == d1
    assert out["decision"]["scope"] == "recall"
    assert set(out["decision"]["refs"]) == {source, d1}
    assert out["superseded"]["status"] == "superseded"
    assert out["superseded"]["superseded_by"] == d2
    async with db.transaction("local") as tx:
        old = await tx.get_decision(d1)
        event = await tx.get_event(out["event_id"])
    assert old is not None
    assert old.text == "The ACB budget is 32K tokens."
    assert event is not None
    assert event.kind == "decision"


async def test_superseding_a_superseded_decision_names_the_head(client: Client, db: Database) -> None:
    """D1 → D2 → D3; superseding D1 again fails, names D3 as the head, and writes nothing."""
    d1, _ = await _decision(client, "Use tabs.")
    d2 = (await call(client, "supersede_decision", decision_id=d1, text="Use spaces."))["decision"]["id"]
    d3 = (await call(client, "supersede_decision", decision_id=d2, text="Use 4 spaces."))["decision"]["id"]
    before = await row_counts(db)
    message = await call_error(client, "supersede_decision", decision_id=d1, text="Use 2 spaces.")
    assert "conflict" in message
    assert d2 in message
    assert d3 in message
    assert await row_counts(db) == before


async def test_unknown_malformed_and_foreign_ids_are_refused(client: Client, db: Database, settings: Settings) -> None:
    """An id that does not exist, is not a decision id, or belongs to another tenant is refused alike."""
    other = settings.model_copy(update={"tenant": "other"})
    async with make_client(db, other) as other_client:
        foreign, _ = await _decision(other_client, "Their decision.")
    assert "not_found" in await call_error(client, "supersede_decision", decision_id=foreign, text="x")
    assert "not_found" in await call_error(
        client, "supersede_decision", decision_id="dec_01M8G6QWH5DRT8XFQ9KRMF7238", text="x"
    )
    message = await call_error(client, "supersede_decision", decision_id="evt_01M8G6QWH5DRT8XFQ9KRMF7238", text="x")
    assert "decision_id" in message
    assert "dec_" in message
    async with db.transaction("other") as tx:
        still = await tx.get_decision(foreign)
    assert still is not None
    assert still.status == "active"


async def test_concurrent_supersessions_of_one_decision_leave_one_successor(client: Client, db: Database) -> None:
    """Five agents supersede the same decision at once: exactly one wins, the rest get a conflict."""
    d1, _ = await _decision(client, "Deploy on Fridays.")
    outcomes: list[bool] = []

    async def attempt(i: int) -> None:
        result = await client.call_tool("supersede_decision", {"decision_id": d1, "text": f"Never deploy, take {i}."})
        outcomes.append(not result.is_error)

    async with anyio.create_task_group() as group:
        for i in range(5):
            group.start_soon(attempt, i)
    assert outcomes.count(True) == 1
    async with db.pool.acquire() as conn:
        successors = await conn.fetchval("SELECT count(*) FROM decisions WHERE supersedes = $1", d1)
    assert successors == 1
