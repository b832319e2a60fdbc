"""How far back full-text search reaches in a large tenant (lexical_candidates, migration 0008).

A tenant with ``corpus_sample`` chunks or more is large: a chunk matching any word of the query is a candidate only
among about its newest ``lexical_reach`` chunks; an older one must match every word; and a word in more than 2% of
all chunks finds nothing by itself, and only among the newest chunks when the query has no other. A smaller tenant
is searched whole. Here the
sample is 100 and the reach 250, and the large tenant writes a chunk a day: its newest 100 chunks span 97 days, so
the search reaches back 2.5 times as far, 243 days (half a day from the nearest chunk either side)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent_memory.caller import Caller
from agent_memory.forget import forget
from agent_memory.replay.seed import bulk
from agent_memory.replay.transcript import Seed
from agent_memory.store.database import Database, ReachMemo
from agent_memory.store.rows import Candidate

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC).replace(microsecond=0)
LARGE, SMALL = "large", "small"


async def _write(db: Database, tenant: str, text: str, days_ago: float, count: int = 1) -> None:
    """``count`` chunks of ``text`` (``{i}`` numbered), one a day, the newest ``days_ago`` days old."""
    end = NOW - timedelta(days=days_ago)
    await bulk(db, tenant, "seeder", Seed(count=count, texts=[text]), end - timedelta(days=count - 1), end)


async def _pool(db: Database, tenant: str, query: str) -> list[Candidate]:
    """The full-text candidates for ``query`` (nothing recent, pinned, tagged or windowed added)."""
    async with db.transaction(tenant) as tx:
        terms, _ = await tx.query_terms(query)
        return await tx.evidence_pool(
            NOW, terms, [], [], None, lexical=600, recent=0, pinned=0, tagged=0, windowed=0,
            corpus_sample=100, lexical_reach=250,
        )  # fmt: skip


async def _lexical(db: Database, tenant: str, query: str) -> set[str]:
    """The texts of the full-text candidates for ``query``."""
    return {c.text for c in await _pool(db, tenant, query)}


@pytest.fixture
async def tenants(db: Database) -> Database:
    """Both tenants hold an old zebra, an older zebra with a giraffe, a recent giraffe and a deploy note; the large
    one also 1,000 daily deploy notes (deploy: a word in most chunks) and a recent chunk with deploy and zebra."""
    for tenant in (LARGE, SMALL):
        await _write(db, tenant, "A zebra crossed the yard.", days_ago=900)
        await _write(db, tenant, "A zebra and a giraffe shared the pond.", days_ago=950)
        await _write(db, tenant, "The giraffe came back.", days_ago=5)
        await _write(db, tenant, f"The {tenant} team's first deploy.", days_ago=400)
    await _write(db, LARGE, "Deploy note {i}: rolled out.", days_ago=0.5, count=1000)
    await _write(db, LARGE, "The deploy woke a zebra.", days_ago=2)
    async with db.pool.acquire() as conn:
        await conn.execute("ANALYZE chunks")  # the statistics that tell a common word
    return db


async def test_a_small_tenant_is_searched_whole(tenants: Database) -> None:
    """Old chunks that hold only one of the words are found too."""
    assert await _lexical(tenants, SMALL, "zebra giraffe") == {
        "A zebra crossed the yard.",
        "A zebra and a giraffe shared the pond.",
        "The giraffe came back.",
    }


async def test_a_large_tenant_reaches_back_only_for_chunks_that_match_every_word(tenants: Database) -> None:
    """The old chunk with one of the words is left out; the older one with both is found."""
    assert await _lexical(tenants, LARGE, "zebra giraffe") == {
        "A zebra and a giraffe shared the pond.",
        "The giraffe came back.",
        "The deploy woke a zebra.",
    }


async def test_a_single_word_reaches_back_unless_it_is_common(tenants: Database) -> None:
    """A one-word query matches every word of itself: its old matches are found, unless the word is common."""
    assert await _lexical(tenants, LARGE, "zebra") == {
        "A zebra crossed the yard.",
        "A zebra and a giraffe shared the pond.",
        "The deploy woke a zebra.",
    }
    assert "The large team's first deploy." not in await _lexical(tenants, LARGE, "deploy")


async def test_a_common_word_finds_nothing_by_itself_in_a_large_tenant(tenants: Database) -> None:
    """Beside a rarer word, the common one finds no deploy note: only the recent chunk with the rarer word (it
    holds both), since the older ones hold one word each. Alone, the common word searches as any other."""
    assert await _lexical(tenants, LARGE, "deploy zebra") == {"The deploy woke a zebra."}
    alone = await _lexical(tenants, LARGE, "deploy")
    assert len(alone) == 244  # the deploy notes of the last 243 days, and the zebra's
    assert "The deploy woke a zebra." in alone
    assert "The large team's first deploy." not in alone  # 400 days old


async def test_the_small_tenant_keeps_its_common_words(tenants: Database) -> None:
    """What is common in the table is searched for in a small tenant all the same."""
    assert await _lexical(tenants, SMALL, "deploy zebra") == {
        "A zebra crossed the yard.",
        "A zebra and a giraffe shared the pond.",
        "The small team's first deploy.",
    }


async def test_a_large_tenants_reach_is_remembered_for_a_while(
    tenants: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a large tenant's search begins to reach is counted once, then remembered (ReachMemo): the next
    recalls search from there without counting the newest chunks again; a small tenant is counted every time.
    A forget, a restore and the memo's age each make it count again (other servers drop it on the forget's
    notice: tests/server/test_relay.py)."""
    key = (LARGE, NOW, 100, 250)
    first = await _pool(tenants, LARGE, "zebra giraffe")
    since = first[0].lexical_since
    assert since is not None
    assert NOW - timedelta(days=245) < since < NOW - timedelta(days=240)  # 2.5 times the 97 days (module doc)
    assert tenants._reach.get(key) == since
    await _pool(tenants, SMALL, "zebra giraffe")
    assert tenants._reach.get((SMALL, NOW, 100, 250)) is None

    # the query searches from where it is told: told the reach began 1,000 days ago, it finds the old zebra
    tenants._reach.put(key, NOW - timedelta(days=1000))
    told = await _pool(tenants, LARGE, "zebra giraffe")
    assert "A zebra crossed the yard." in {c.text for c in told}
    assert {(c.lexical_since, c.corpus_size) for c in told} == {(NOW - timedelta(days=1000), 100)}

    await forget(tenants, Caller(tenant=LARGE, agent_id="a"), "session", "no such session")
    assert tenants._reach.get(key) is None
    assert [c.text for c in await _pool(tenants, LARGE, "zebra giraffe")] == [c.text for c in first]
    tenants.forget_known_tenants()  # after a restore
    assert tenants._reach.get(key) is None

    await _pool(tenants, LARGE, "zebra")
    assert tenants._reach.get(key) == since
    monkeypatch.setattr(ReachMemo, "SECONDS", 0.0)
    assert tenants._reach.get(key) is None  # too old: counted again
