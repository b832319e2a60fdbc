"""Export and import: a tenant's data out as JSON lines and back into another tenant, giving the same bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_memory import views
from agent_memory.embeddings.model import DIMENSION, MODEL_ID, Embedder
from agent_memory.reindex import embed_chunks
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, run_cli

pytestmark = pytest.mark.anyio

REQUESTS: list[dict[str, Any]] = [
    {"query": "", "session_id": "work"},
    {"query": "refund policy for card payments", "session_id": "elsewhere", "budget_tokens": 4000},
    {"query": "who owns the migration tests", "session_id": "work", "channel": "team"},
    {"query": "", "session_id": "work", "agent_id": "agent-b", "channel": "agent"},
]


async def seed(client: Client, db: Database, tenant: str) -> None:
    """A bit of everything: turns, a long tool output (an artifact), a superseded decision, a task with two
    updates, a packet already delivered and one pending, and views."""
    turns = [
        {"text": f"Turn {i}: the refund path for card payments, step {i}.", "session_id": "work"} for i in range(12)
    ]
    await call(client, "remember", events=turns)
    await call(client, "remember", text="trace\n" + "frame refund() line 42\n" * 400, kind="tool_result")
    first = (await call(client, "remember", text="Refunds settle in 5 days.", kind="decision"))["events"][0]
    await call(client, "supersede_decision", decision_id=first["decision_id"], text="Refunds settle in 3 days.")
    task = await call(client, "remember", text="x", kind="task_update", task={"title": "Write migration tests"})
    update = {"task_id": task["events"][0]["task_id"], "status": "doing", "owner": "bob"}
    await call(client, "remember", text="started", kind="task_update", task=update, channel="team")
    await call(client, "handoff_packet", to_agent="agent-b", task="Finish the refund path", session_id="work")
    await call(client, "recall", query="", session_id="work", agent_id="agent-b", channel="agent")  # delivers it
    await call(client, "handoff_packet", to_agent="agent-c", task="Review the refund path")
    await views.set_view(db, tenant, "rules", "Cite the events you rely on.", "test")
    await views.set_view(db, tenant, "identity", "I am the payments agent.", "test")


def comparable(bundle: dict[str, Any]) -> dict[str, Any]:
    """A bundle without what depends on the moment (timings, the path through the hot set)."""
    provenance = {k: v for k, v in bundle["provenance"].items() if k not in {"timings_ms", "path", "rebuilt_chunks"}}
    return {**bundle, "provenance": provenance}


async def test_a_round_trip_gives_the_same_bundles(database_url: str, db: Database, tmp_path: Path) -> None:
    """Export a tenant with the CLI, import it into another tenant: the same rows, and the same requests give
    the same bundles in both."""
    source, copy = "acme", "acme-restored"
    async with make_client(db, Settings(database_url=database_url, tenant=source, agent="agent-a")) as client:
        await seed(client, db, source)
    exported = tmp_path / "acme.jsonl"
    done = run_cli(database_url, "export", "--output", str(exported), "--tenant", source, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["format"] == "agent-memory-export"
    tables = {line["table"] for line in lines[1:]}
    assert tables == {"events", "artifacts", "chunks", "decisions", "tasks", "handoffs", "views"}

    restored = run_cli(database_url, "import", str(exported), "--tenant", copy, timeout=120)
    assert restored.returncode == 0, restored.stderr
    imported = json.loads(restored.stdout)["imported"]
    assert sum(imported.values()) == len(lines) - 1

    async with (
        make_client(db, Settings(database_url=database_url, tenant=source, agent="agent-a")) as original,
        make_client(db, Settings(database_url=database_url, tenant=copy, agent="agent-a")) as duplicate,
    ):
        for request in REQUESTS:
            assert comparable(await call(duplicate, "recall", **request)) == comparable(
                await call(original, "recall", **request)
            ), request

    again = run_cli(database_url, "import", str(exported), "--tenant", copy, timeout=120)
    assert again.returncode == 1
    assert "already holds events" in again.stderr


async def test_export_since_and_bad_imports(database_url: str, db: Database, tmp_path: Path) -> None:
    """--since leaves older rows out; a file that is not an export, or a broken line, is refused naming the
    line, and nothing is imported."""
    async with make_client(db, Settings(database_url=database_url, tenant="acme")) as client:
        await call(client, "remember", text="old news", at="2020-01-01T00:00:00Z")
        await call(client, "remember", text="fresh news")
    recent = run_cli(database_url, "export", "--since", "2025-01-01", "--tenant", "acme", timeout=120)
    texts = [json.loads(line)["row"].get("text") for line in recent.stdout.splitlines()[1:]]
    assert "fresh news" in texts
    assert "old news" not in texts

    not_export = run_cli(database_url, "import", "-", "--tenant", "other", stdin='{"hello": 1}\n', timeout=120)
    assert not_export.returncode == 1
    assert "export header" in not_export.stderr
    broken = recent.stdout + "{not json\n"
    refused = run_cli(database_url, "import", "-", "--tenant", "other", stdin=broken, timeout=120)
    assert refused.returncode == 1
    assert "line" in refused.stderr
    async with db.transaction("other") as tx:
        assert await tx.count_events() == 0


async def test_vectors_travel_as_arrays_and_come_back(database_url: str, db: Database, tmp_path: Path) -> None:
    """An export holds each chunk's vectors as JSON arrays of numbers, with or without pgvector (a database of
    either kind imports them), and the import restores them with their model."""
    async with make_client(db, Settings(database_url=database_url, tenant="vectors", agent="agent-a")) as client:
        await call(client, "remember", text="Nate made coconut milk ice cream.", session_id="party")
        await call(client, "remember", text="How did it turn out?", session_id="party")
    embedder = Embedder().load()
    await embed_chunks(db, embedder, tenant="vectors")
    exported = tmp_path / "vectors.jsonl"
    done = run_cli(database_url, "export", "--output", str(exported), "--tenant", "vectors", timeout=120)
    assert done.returncode == 0, done.stderr
    chunks = [line["row"] for line in map(json.loads, exported.read_text(encoding="utf-8").splitlines()[1:])]
    chunks = [row for row in chunks if "embedding" in row]
    assert len(chunks) == 2
    for row in chunks:
        assert len(row["embedding"]) == len(row["context_embedding"]) == DIMENSION
        assert all(isinstance(x, float) for x in row["embedding"])
        assert row["embedding_model"] == MODEL_ID

    restored = run_cli(database_url, "import", str(exported), "--tenant", "vectors-copy", timeout=120)
    assert restored.returncode == 0, restored.stderr
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, seq, event_id, embedding::real[] AS own, context_embedding::real[] AS context,"
            " embedding_model FROM chunks WHERE tenant_id IN ('vectors', 'vectors-copy') ORDER BY event_id, tenant_id"
        )
    assert len(rows) == 4
    for original, copy in zip(rows[::2], rows[1::2], strict=True):
        assert (original["tenant_id"], copy["tenant_id"]) == ("vectors", "vectors-copy")
        assert copy["embedding_model"] == MODEL_ID
        assert copy["own"] == pytest.approx(original["own"], abs=1e-6)
        assert copy["context"] == pytest.approx(original["context"], abs=1e-6)
