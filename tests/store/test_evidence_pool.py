"""The evidence candidate pool as the store returns it: every field of a candidate, read from a real query."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mcp import Client

from agent_memory.store.database import Database
from agent_memory.store.rows import Candidate
from tests.helpers import call

pytestmark = pytest.mark.anyio

END = datetime.max.replace(tzinfo=UTC)


async def test_a_candidate_holds_its_chunk_event_and_decision(client: Client, db: Database) -> None:
    """Candidates are built from the query's columns by position: each field must hold what its name says, and
    ``matched`` only the query's lexemes that the chunk holds."""
    said = await call(
        client,
        "remember",
        text="Deploys on Friday need a second approver from the release team.",
        kind="decision",
        actor="Dana",
        tags=["ops"],
        importance=0.8,
        session_id="ops",
        channel="team",
        at="2026-03-01T10:00:00Z",
    )
    event_id = said["events"][0]["id"]
    async with db.transaction("local") as tx:
        terms, _ = await tx.query_terms("who approves deploys for a release, and the budget?")
        pool = await tx.evidence_pool(
            END, terms, ["ops"], [], None, lexical=10, recent=10, pinned=10, tagged=10, windowed=10,
            corpus_sample=1000, lexical_reach=5000,
        )  # fmt: skip
        decision = await tx.decisions_by_ids([d for d, *_ in await tx.decisions_of_events([event_id])])
    [candidate] = pool
    assert isinstance(candidate, Candidate)
    assert (candidate.event_id, candidate.seq, candidate.session_id) == (event_id, 0, "ops")
    assert (candidate.kind, candidate.channel, candidate.sensitivity) == ("decision", "team", "low")
    assert candidate.text.startswith("Deploys on Friday")
    assert (candidate.tags, candidate.pinned) == (["ops"], False)
    assert candidate.importance == pytest.approx(0.8)
    assert candidate.ts == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert candidate.rank > 0
    assert (candidate.agent_id, candidate.actor, candidate.event_refs) == ("agent-a", "Dana", [])
    assert len(candidate.text_hash) == 64
    assert (candidate.decision_id, candidate.decision_status) == (decision[0].id, "active")
    assert (candidate.superseded_by, candidate.superseded_at) == (None, None)
    assert (candidate.embedding_model, candidate.embedding_dim) == (None, None)
    assert sorted(candidate.matched) == ["approv", "deploy", "releas"]
    assert "budget" in terms  # a query word the chunk does not hold
    assert candidate.lexeme_count == 7  # deploy, friday, need, second, approv, releas, team
    assert candidate.corpus_size == 1
