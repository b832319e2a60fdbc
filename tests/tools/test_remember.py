"""The ``remember`` tool through a real MCP client on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, call_error, row_counts

pytestmark = pytest.mark.anyio


async def test_one_event_is_stored_with_its_fields(client: Client, db: Database) -> None:
    """One event comes back with an id, a token estimate and a chunk; the row holds what was sent."""
    at = "2026-11-01T09:30:00+01:00"
    out = await call(
        client,
        "remember",
        text="The deploy script lives in scripts/deploy.sh",
        kind="fact",
        session_id="s1",
        channel="team",
        actor="assistant",
        tags=["deploy", "scripts"],
        at=at,
        importance=0.7,
        metadata={"source": "README"},
    )
    receipt = out["events"][0]
    assert out["count"] == 1
    assert receipt["id"].startswith("evt_")
    assert receipt["kind"] == "fact"
    assert receipt["sensitivity"] == "low"
    assert len(receipt["chunk_ids"]) == 1
    assert receipt["token_est"] > 0
    async with db.transaction("local") as tx:
        event = await tx.get_event(receipt["id"])
    assert event is not None
    assert event.ts == datetime.fromisoformat(at)
    assert event.tags == ["deploy", "scripts"]
    assert event.metadata == {"source": "README"}
    assert event.agent_id == "agent-a"


async def test_batch_is_stored_in_order_with_call_level_defaults(client: Client, db: Database) -> None:
    """A batch takes call-level defaults (session, channel) that each item may override."""
    out = await call(
        client,
        "remember",
        session_id="batch",
        channel="team",
        events=[
            {"text": "user: list the files", "actor": "user"},
            {"text": "ls -la", "kind": "tool_call"},
            {"text": "README.md\nsrc/", "kind": "tool_result", "channel": "private"},
        ],
    )
    assert out["count"] == 3
    kinds = [e["kind"] for e in out["events"]]
    assert kinds == ["message", "tool_call", "tool_result"]
    assert {e["session_id"] for e in out["events"]} == {"batch"}
    async with db.transaction("local") as tx:
        last = await tx.get_event(out["events"][2]["id"])
    assert last is not None
    assert last.channel == "private"


@pytest.mark.parametrize(
    ("arguments", "field", "says"),
    [
        ({"text": "x", "kind": "gossip"}, "kind", "message"),
        ({"text": "   "}, "text", "empty"),
        ({"text": "x", "refs": ["evt_01M8G6QWH5DRT8XFQ9KRMF7238"]}, "refs[0]", "no event or decision"),
        ({"text": "x", "refs": ["not-an-id"]}, "refs[0]", "evt_"),
        ({"text": "x", "at": "yesterday"}, "at", "datetime"),
        ({"text": "x", "at": "2026-11-01T09:30:00"}, "at", "timezone"),
        ({"text": "x", "at": "1969-12-31T23:00:00Z"}, "at", "1970"),
        ({"text": "x", "at": "2999-01-01T00:00:00Z"}, "at", "one day from now"),
        ({"text": "x", "channel": "everyone"}, "channel", "public"),
        ({"text": "x", "sensitivity": "top"}, "sensitivity", "secret"),
        ({"text": "x", "importance": 3}, "importance", "1"),
        ({"text": "x", "decision": {"rationale": "r"}}, "decision", "kind=decision"),
        ({"text": "x", "task": {"title": "t"}}, "task", "kind=task_update"),
        ({"text": "x", "metadata": {"blob": "y" * 70_000}}, "metadata", "bytes"),
        ({}, "text", "events"),
        ({"text": "x", "events": [{"text": "y"}]}, "text", "one or the other"),
        ({"events": []}, "events", "no events"),
        ({"events": [{"text": "ok"}, {"kind": "message"}]}, "events[1].text", "required"),
        ({"events": [{"text": "ok"}, {"text": "y", "kind": "nope"}]}, "events[1].kind", "message"),
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    client: Client, db: Database, arguments: dict[str, Any], field: str, says: str
) -> None:
    """Each bad value gets an error naming the field and what is allowed, and nothing is written."""
    before = await row_counts(db)
    message = await call_error(client, "remember", **arguments)
    assert field in message
    assert says.lower() in message.lower()
    assert await row_counts(db) == before


async def test_oversized_batch_is_refused_whole(client: Client, db: Database) -> None:
    """501 events are refused with the limit named; not one of them is stored."""
    message = await call_error(client, "remember", events=[{"text": f"event {i}"} for i in range(501)])
    assert "501" in message
    assert "500" in message
    assert (await row_counts(db))["events"] == 0


async def test_a_bad_item_late_in_a_batch_rolls_back_the_whole_batch(client: Client, db: Database) -> None:
    """One transaction per call: an unknown ref in item 3 leaves items 1 and 2 unwritten too."""
    message = await call_error(
        client,
        "remember",
        events=[{"text": "a"}, {"text": "b"}, {"text": "c", "refs": ["dec_01M8G6QWH5DRT8XFQ9KRMF7238"]}],
    )
    assert "events[2].refs[0]" in message
    assert (await row_counts(db))["events"] == 0


async def test_refs_must_exist_in_the_callers_tenant(client: Client, db: Database, settings: Settings) -> None:
    """An event id of another tenant is as unknown as an id that never existed."""
    other = settings.model_copy(update={"tenant": "other"})
    async with make_client(db, other) as other_client:
        foreign = (await call(other_client, "remember", text="their event"))["events"][0]["id"]
    message = await call_error(client, "remember", text="mine", refs=[foreign])
    assert "not_found" in message
    own = (await call(client, "remember", text="my event"))["events"][0]["id"]
    out = await call(client, "remember", text="follow-up", refs=[own])
    assert out["count"] == 1


async def test_exact_duplicates_link_to_the_first_occurrence(client: Client, db: Database) -> None:
    """The same text (modulo case and white space) is recorded again but linked, with no new chunks."""
    first = (await call(client, "remember", text="The budget is 65K tokens."))["events"][0]
    second = (await call(client, "remember", text="  the BUDGET is   65k tokens. "))["events"][0]
    third = (await call(client, "remember", text="The budget is 65K tokens."))["events"][0]
    assert first["duplicate_of"] is None
    assert second["duplicate_of"] == first["id"]
    assert third["duplicate_of"] == first["id"]
    assert second["chunk_ids"] == third["chunk_ids"] == []
    counts = await row_counts(db)
    assert counts["events"] == 3
    assert counts["chunks"] == 1


async def test_concurrent_writers_of_the_same_text_agree_on_one_original(client: Client, db: Database) -> None:
    """Twenty concurrent remember calls with the same new text: exactly one original, one set of chunks."""
    receipts: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        out = await call(client, "remember", text="A fact said by many agents at once.", agent_id=f"agent-{i}")
        receipts.append(out["events"][0])

    async with anyio.create_task_group() as group:
        for i in range(20):
            group.start_soon(one, i)
    originals = [r for r in receipts if r["duplicate_of"] is None]
    assert len(originals) == 1
    assert {r["duplicate_of"] for r in receipts if r["duplicate_of"]} == {originals[0]["id"]}
    counts = await row_counts(db)
    assert counts["events"] == 20
    assert counts["chunks"] == 1


async def test_concurrent_batches_all_land(client: Client, db: Database) -> None:
    """Ten concurrent batches of distinct events all land, each event once."""

    async def batch(b: int) -> None:
        await call(client, "remember", events=[{"text": f"batch {b} event {i}"} for i in range(25)])

    async with anyio.create_task_group() as group:
        for b in range(10):
            group.start_soon(batch, b)
    counts = await row_counts(db)
    assert counts["events"] == 250
    assert counts["chunks"] == 250


async def test_long_text_is_chunked_with_stored_estimates(client: Client, db: Database) -> None:
    """A long message is cut into chunks of about 400 tokens whose estimates are stored."""
    paragraphs = [f"Paragraph {i}. " + "The migration plan covers schemas and data. " * 12 for i in range(30)]
    out = await call(client, "remember", text="\n\n".join(paragraphs))
    receipt = out["events"][0]
    assert len(receipt["chunk_ids"]) >= 4
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT token_est FROM chunks WHERE event_id = $1", receipt["id"])
    assert all(0 < row["token_est"] <= 400 for row in rows)
    assert sum(row["token_est"] for row in rows) >= receipt["token_est"] * 0.9


async def test_oversized_tool_output_becomes_an_artifact_with_an_excerpt(client: Client, db: Database) -> None:
    """A 200-line tool output: the event keeps an excerpt, the artifact the whole, readable as a resource."""
    output = "\n".join(f"src/module_{i:03d}.py  {i * 37} bytes" for i in range(200))
    receipt = (await call(client, "remember", text=output, kind="tool_result"))["events"][0]
    assert receipt["truncated"] is True
    assert receipt["original_chars"] == len(output)
    assert receipt["artifact_id"].startswith("art_")
    async with db.transaction("local") as tx:
        event = await tx.get_event(receipt["id"])
    assert event is not None
    assert len(event.text) < len(output) / 2
    assert "lines omitted" in event.text
    assert f"memory://artifacts/{receipt['artifact_id']}" in event.text
    async with db.pool.acquire() as conn:
        chunks = [r["text"] for r in await conn.fetch("SELECT text FROM chunks WHERE event_id = $1", receipt["id"])]
    assert chunks
    assert all(
        text.endswith(f"memory://artifacts/{receipt['artifact_id']}, {len(output)} characters]") for text in chunks
    )
    resource = await client.read_resource(f"memory://artifacts/{receipt['artifact_id']}")
    assert resource.contents[0].text == output  # type: ignore[union-attr]


async def test_a_short_tool_output_is_kept_whole(client: Client) -> None:
    """Tool output under the limit stays in the event."""
    receipt = (await call(client, "remember", text="ok: 3 files", kind="tool_result"))["events"][0]
    assert receipt["truncated"] is False
    assert receipt["artifact_id"] is None


async def test_decision_event_creates_an_active_decision_citing_its_refs(client: Client, db: Database) -> None:
    """kind=decision adds an active ledger row with the structured fields and the refs."""
    source = (await call(client, "remember", text="The team agreed to use PostgreSQL only."))["events"][0]["id"]
    receipt = (
        await call(
            client,
            "remember",
            text="Store everything in PostgreSQL; no second database.",
            kind="decision",
            refs=[source],
            decision={"rationale": "one thing to operate", "alternatives": ["Redis", "SQLite"], "confidence": 0.9},
        )
    )["events"][0]
    assert receipt["decision_id"].startswith("dec_")
    async with db.transaction("local") as tx:
        decision = await tx.get_decision(receipt["decision_id"])
    assert decision is not None
    assert decision.status == "active"
    assert decision.refs == [source]
    assert decision.event_id == receipt["id"]
    assert decision.alternatives == ["Redis", "SQLite"]
    assert decision.confidence == pytest.approx(0.9)


async def test_task_updates_create_then_update_one_task(client: Client, db: Database) -> None:
    """A task_update without task_id creates a task; later updates with its id change it in place."""
    created = (
        await call(client, "remember", text="Write the migration tests", kind="task_update", task={"owner": "bob"})
    )["events"][0]
    task_id = created["task_id"]
    assert task_id.startswith("tsk_")
    await call(client, "remember", text="started", kind="task_update", task={"task_id": task_id, "status": "doing"})
    await call(
        client,
        "remember",
        text="done now",
        kind="task_update",
        task={"task_id": task_id, "status": "done", "note": "ok"},
    )
    async with db.transaction("local") as tx:
        task = await tx.get_task(task_id)
    assert task is not None
    assert task.title == "Write the migration tests"
    assert task.status == "done"
    assert task.owner == "bob"
    assert task.note == "ok"
    assert (await row_counts(db))["tasks"] == 1


async def test_a_caller_chosen_task_id_is_upserted(client: Client, db: Database) -> None:
    """A task id the caller picks is created on first use and updated after."""
    await call(client, "remember", text="x", kind="task_update", task={"task_id": "T-7", "title": "Ship v1"})
    await call(client, "remember", text="y", kind="task_update", task={"task_id": "T-7", "status": "blocked"})
    async with db.transaction("local") as tx:
        task = await tx.get_task("T-7")
    assert task is not None
    assert (task.title, task.status) == ("Ship v1", "blocked")


async def test_sensitivity_is_classified_when_omitted(client: Client) -> None:
    """Private talk and preferences are high, public talk none, team talk low, personal data high."""
    cases = [
        ({"text": "just chatting", "channel": "private"}, "high"),
        ({"text": "I prefer dark mode", "kind": "preference", "channel": "team"}, "high"),
        ({"text": "release notes are out", "channel": "public"}, "none"),
        ({"text": "standup moved to 10am", "channel": "team"}, "low"),
        ({"text": "mail me at jane.doe@example.com", "channel": "team"}, "high"),
        ({"text": "given explicitly", "channel": "team", "sensitivity": "high"}, "high"),
    ]
    for arguments, expected in cases:
        receipt = (await call(client, "remember", **arguments))["events"][0]
        assert receipt["sensitivity"] == expected, arguments


async def test_replayed_history_keeps_its_timestamps(client: Client, db: Database) -> None:
    """Events replayed with `at` keep those times, two weeks back included."""
    then = datetime.now(UTC) - timedelta(days=14)
    receipt = (await call(client, "remember", text="old decision context", at=then.isoformat()))["events"][0]
    async with db.transaction("local") as tx:
        event = await tx.get_event(receipt["id"])
    assert event is not None
    assert abs((event.ts - then).total_seconds()) < 0.001


async def test_nul_characters_are_refused_by_name(client: Client, db: Database) -> None:
    """PostgreSQL text cannot hold NUL: the field is named, nothing is written."""
    assert "text: contains a NUL" in await call_error(client, "remember", text="a\x00b")
    assert "metadata: contains a NUL" in await call_error(client, "remember", text="ok", metadata={"a": "x\x00y"})
    assert (await row_counts(db))["events"] == 0


async def test_concurrent_batches_with_shared_texts_in_opposite_orders_all_land(client: Client, db: Database) -> None:
    """Batches that share texts in opposite orders would deadlock on the duplicate locks; the loser is retried."""
    texts = [f"shared line {i}" for i in range(30)]

    async def batch(reverse: bool) -> None:
        await call(client, "remember", events=[{"text": t} for t in (reversed(texts) if reverse else texts)])

    async with anyio.create_task_group() as group:
        for i in range(8):
            group.start_soon(batch, i % 2 == 1)
    counts = await row_counts(db)
    assert counts["events"] == 240
    assert counts["chunks"] == 30
