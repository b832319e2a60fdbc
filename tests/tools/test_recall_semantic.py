"""Hybrid recall through a real MCP client: a paraphrase that shares no word with the query is found once its
chunk has a vector; provenance says which semantic path ran (pgvector, or reranking the bounded pool without
it) and how many candidates lacked a vector. Both paths run in CI: the embedded PostgreSQL has pgvector, the
server PostgreSQL does not."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from agent_memory.embeddings.model import Embedder
from agent_memory.reindex import embed_chunks
from agent_memory.store.database import Database
from tests.helpers import call

pytestmark = pytest.mark.anyio

CHATTER = [
    "Lunch today was noodles and green tea.",
    "The printer on the third floor is jammed again.",
    "Remember to water the office plants on Friday.",
    "The parking garage closes at nine tonight.",
]
WANTED = "We decided to move our records from MySQL to PostgreSQL next quarter."
QUERY = "which data store did the team pick for the migration"


def evidence(bundle: dict[str, Any]) -> list[str]:
    items = next(s for s in bundle["sections"] if s["name"] == "evidence")["items"]
    return [item["refs"][0] for item in items]


async def semantic_path(db: Database) -> str:
    async with db.pool.acquire() as conn:
        kind = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
    return "pgvector" if str(kind).startswith("vector") else "rerank"


async def test_a_paraphrase_is_found_once_embedded(client: Client, db: Database) -> None:
    """Before the backfill every candidate lacks a vector and the lexical rules hold (no shared word: no
    evidence); after it, the paraphrase is the first evidence item, and nothing lacks a vector."""
    await call(client, "remember", events=[{"text": t} for t in CHATTER], session_id="s")
    wanted = (await call(client, "remember", text=WANTED, session_id="s"))["events"][0]["id"]
    await call(client, "remember", events=[{"text": t + " (again)"} for t in CHATTER], session_id="s")
    before = await call(client, "recall", query=QUERY, session_id="elsewhere")
    assert before["provenance"]["semantic"] == await semantic_path(db)
    assert before["provenance"]["candidates_without_vector"] == before["provenance"]["candidate_pool"] > 0
    assert wanted not in evidence(before)

    await embed_chunks(db, Embedder(), tenant="local")
    after = await call(client, "recall", query=QUERY, session_id="elsewhere")
    assert after["provenance"]["semantic"] == await semantic_path(db)
    assert after["provenance"]["candidates_without_vector"] == 0
    assert evidence(after)[0] == wanted
    assert set(evidence(after)) <= {wanted}, "unrelated chatter is not close enough in meaning to be evidence"


async def test_a_temporal_cue_steers_the_window(client: Client, db: Database) -> None:
    """ "two weeks ago" is measured from the newest event: what was said then comes first, and provenance
    names the window."""
    await call(client, "remember", text="The deploy of the billing service went fine.", at="2026-01-01T10:00:00Z")
    old = await call(client, "remember", text="The deploy of the billing service failed.", at="2026-01-15T10:00:00Z")
    await call(client, "remember", text="The deploy of the billing service was slow.", at="2026-01-29T10:00:00Z")
    bundle = await call(client, "recall", query="how did the billing deploy go two weeks ago?", session_id="x")
    assert evidence(bundle)[0] == old["events"][0]["id"]
    start, end = bundle["provenance"]["time_window"]
    assert start < "2026-01-15T10:00:00" < end
