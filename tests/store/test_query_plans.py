"""The queries of the recall and remember hot paths can each be served by an index that narrows more than the
tenant: EXPLAINed inside a tenant transaction (row-level security in force) with sequential scans priced out
(``enable_seqscan = off``), no plan reads a whole table of events, chunks, decisions, tasks or handoffs, and
some index condition constrains a column besides ``tenant_id`` (every index leads with it, so an index scan on
the tenant alone would still read all of the tenant's rows).

Row-level security keeps the planner from using an index for an operator that is not leakproof, such as the full-text
``@@``: full-text search runs in SECURITY DEFINER functions (migration 0006), whose bodies are planned as their owner
(here a superuser, which row-level security does not hold) and are shown to use their GIN index."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from agent_memory.replay.seed import bulk
from agent_memory.replay.transcript import Seed
from agent_memory.store.database import Database
from agent_memory.store.queries import QUERIES

pytestmark = pytest.mark.anyio

TENANT = "plans"
WATCHED = {"events", "chunks", "decisions", "tasks", "handoffs"}
NOW = datetime.now(UTC)
HOT_PATH: dict[str, tuple[Any, ...]] = {
    "recent_events": ("history", NOW, 50),
    "open_tasks": (200,),
    "decisions_as_of": (NOW, 200),
    "pending_handoffs": ("agent-b", 100),
    "agents_awaiting_handoffs": (1001,),
    "delivered_handoffs": ("history", 5),
    "find_originals": (["0" * 64, "1" * 64],),
    "get_event": ("evt_01JABCDEFGHJKMNPQRSTVWXYZ0",),
    "latest_event_ts": (NOW,),
    "superseded_decision_events": (["evt_01JABCDEFGHJKMNPQRSTVWXYZ0"], NOW),
    "task_updates_until": (NOW, 500),
    "decisions_matching": (NOW, "budget | token", 200),
    "evidence_pool": (
        NOW,
        600,
        200,
        100,
        ["budget"],
        100,
        [],
        None,
        None,
        100,
        ["budget", "token"],
        20_000,
        100_000,
        None,
    ),
}
SEARCHES = {  # query: the SECURITY DEFINER functions that do its searches, their arguments, the index serving each
    # and how many of its searches that index serves
    "decisions_matching": [("decisions_matching", (NOW, "budget | token", 200), "decisions_tsv", 1)],
    "evidence_pool": [
        # in a small tenant (since -infinity: the newest chunks only), and in a large one (the older ones too)
        ("lexical_candidates", (NOW, ["budget", "token"], 600, datetime.min.replace(tzinfo=UTC)), "chunks_tsv", 1),
        ("lexical_candidates", (NOW, ["budget", "token"], 600, NOW - timedelta(days=10)), "chunks_tsv", 2),
        ("chunks_tagged", (NOW, ["budget"], 100), "chunks_tags", 1),
    ],
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a JSON plan."""
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _narrows(node: dict[str, Any], partial: set[str]) -> bool:
    """Whether an index scan constrains something besides the tenant: by its condition, or by using a partial
    index (whose predicate does)."""
    condition = re.sub(r"\(?tenant_id = [^)]*\)?", "", node["Index Cond"]).strip(" ()AND")
    return bool(condition) or node.get("Index Name") in partial


@pytest.fixture
async def seeded(db: Database) -> Database:
    """3,000 events and chunks (one in fifty about the token budget), 2,000 tasks and 1,500 decisions."""
    texts = ["Deploy note {i}: module {i} rolled out to staging."] * 49 + ["Budget note {i}: the token budget."]
    seed = Seed(count=3000, texts=texts, session="history")
    await bulk(db, TENANT, "seeder", seed, NOW - timedelta(days=30), NOW - timedelta(days=1))
    async with db.pool.acquire() as conn:
        # decisions: every other event and those about the budget, every tenth superseded (with next to none, the
        # planner reads all of a tenant's decisions rather than look up a list of events: superseded_decision_events)
        await conn.execute(
            """INSERT INTO decisions (tenant_id, id, event_id, session_id, agent_id, channel, sensitivity, text,
                                      token_est, status, ts, superseded_at)
               SELECT tenant_id, 'dec_' || id, id, session_id, agent_id, channel, sensitivity, text, token_est,
                      CASE WHEN n % 10 = 0 THEN 'superseded' ELSE 'active' END, ts,
                      CASE WHEN n % 10 = 0 THEN ts + interval '1 hour' END
               FROM (SELECT *, row_number() OVER (ORDER BY ts, id) AS n FROM events WHERE tenant_id = $1) e
               WHERE n % 2 = 0 OR text LIKE 'Budget%'""",
            TENANT,
        )
        await conn.execute(  # tasks: mostly done, a few open (what a long-lived tenant looks like)
            """INSERT INTO tasks (tenant_id, id, title, status, session_id, channel, sensitivity, token_est,
                                  last_event_id, created_at, updated_at)
               SELECT $1, 'tsk_' || i, 'task ' || i, CASE WHEN i % 100 = 0 THEN 'open' ELSE 'done' END, 'history',
                      'team', 'none', 3, 'evt_' || i, now(), now() - i * interval '1 minute'
               FROM generate_series(1, 2000) AS i""",
            TENANT,
        )
        # VACUUM as well: rows written since the last one wait in a GIN index's pending list, which the planner
        # prices high (autovacuum would soon empty it)
        await conn.execute("VACUUM ANALYZE")
    return db


async def _plan(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The nodes of the plan of ``sql`` with ``args``."""
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return _nodes(json.loads(plan)[0]["Plan"])  # EXPLAIN returns json, not jsonb: a string


async def _literals(conn: asyncpg.Connection, types: Sequence[str], args: Sequence[Any]) -> str:
    """``args`` as SQL literals of ``types``, comma-separated: EXECUTE of a prepared statement takes no
    parameters."""
    casts = ", ".join(f"${i}::{t}" for i, t in enumerate(types, 1))
    literals: str = await conn.fetchval(f"SELECT format('{', '.join(['%L'] * len(types))}', {casts})", *args)
    return literals


async def _function_plan(
    conn: asyncpg.Connection, function: str, args: tuple[Any, ...], mode: str
) -> list[dict[str, Any]]:
    """The nodes of the plan of a search function's body, planned as the function runs it: as its owner (the login
    of these tests), with its settings (search_path), in the tenant transaction ``conn`` is in, with the values of
    ``args`` (``plan_cache_mode = force_custom_plan``) or without them (``force_generic_plan``: SQL functions are
    planned so up to PostgreSQL 17). Leaves the transaction as the owner."""
    await conn.execute("SET LOCAL ROLE NONE")
    body = await conn.fetchrow(
        "SELECT prosrc, oidvectortypes(proargtypes) AS types, proconfig, prosecdef,"
        " pg_get_userbyid(proowner) = current_user AS ours FROM pg_proc WHERE proname = $1",
        function,
    )
    assert body["prosecdef"]
    assert body["ours"]
    for setting in body["proconfig"]:
        await conn.execute("SELECT set_config($1, $2, true)", *setting.split("=", 1))
    await conn.execute("SET LOCAL enable_seqscan = off")
    await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
    await conn.execute(f"PREPARE body ({body['types']}) AS {body['prosrc']}")
    try:
        literals = await _literals(conn, [t.strip() for t in body["types"].split(",")], args)
        return await _plan(conn, f"EXECUTE body ({literals})")
    finally:
        await conn.execute("DEALLOCATE body")


def _reads_no_whole_table(nodes: list[dict[str, Any]]) -> None:
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in WATCHED], nodes


@pytest.mark.parametrize("name", sorted(HOT_PATH))
async def test_hot_path_query_uses_an_index(seeded: Database, name: str) -> None:
    """Planned as agent_memory_app under row-level security (with the body of the search function it calls, if
    any, planned as that function runs it), the query reads no whole table, and some index condition narrows more
    than the tenant."""
    async with seeded.pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["enter_tenant"], TENANT)
        await conn.execute("SET LOCAL enable_seqscan = off")
        nodes = await _plan(conn, QUERIES[name], TENANT, *HOT_PATH[name])
        for function, args, *_ in SEARCHES.get(name, []):
            nodes += await _function_plan(conn, function, args, "force_custom_plan")
    _reads_no_whole_table(nodes)
    async with seeded.pool.acquire() as conn:
        partial = {
            r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '% WHERE %'")
        }
    scans = [n for n in nodes if "Index Cond" in n]
    assert any(_narrows(n, partial) for n in scans), [(n.get("Index Name"), n["Index Cond"]) for n in scans]


SEARCH_CASES = [(name, i) for name, functions in sorted(SEARCHES.items()) for i in range(len(functions))]


@pytest.mark.parametrize(("name", "search"), SEARCH_CASES)
@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_search_uses_its_gin_index(seeded: Database, name: str, search: int, mode: str) -> None:
    """The query leaves its full-text (or tag) search to a SECURITY DEFINER function (row-level security would keep
    the planner from using the GIN index for @@ and &&), whose body, planned with the query's arguments or without
    them, is served by the GIN index."""
    function, args, index, searches = SEARCHES[name][search]
    async with seeded.pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["enter_tenant"], TENANT)
        calls = {n.get("Function Name") for n in await _plan(conn, QUERIES[name], TENANT, *HOT_PATH[name])}
        assert function in calls
        nodes = await _function_plan(conn, function, args, mode)
    _reads_no_whole_table(nodes)
    assert [n.get("Index Name") for n in nodes].count(index) >= searches, nodes


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_remembered_reach_skips_counting_the_newest_chunks(seeded: Database, mode: str) -> None:
    """Told where a large tenant's reach begins ($15, ReachMemo), the candidate pool never runs the scan that
    counts the newest chunks, with the query's arguments planned in or not; untold, it does."""
    told = (*HOT_PATH["evidence_pool"][:-1], NOW - timedelta(days=10))
    async with seeded.pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["enter_tenant"], TENANT)
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE pool AS {QUERIES['evidence_pool']}")
        try:
            loops: dict[str, list[int]] = {}
            for name, args in (("told", told), ("untold", HOT_PATH["evidence_pool"])):
                literals = await _literals(conn, _POOL_TYPES, (TENANT, *args))
                plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE pool ({literals})")
                counting = [n for n in _nodes(json.loads(plan)[0]["Plan"]) if n.get("Subplan Name") == "CTE newest"]
                loops[name] = [n["Actual Loops"] for n in _nodes(counting[0]) if n.get("Relation Name") == "chunks"]
        finally:
            await conn.execute("DEALLOCATE pool")
    assert loops["untold"] == [1]
    assert not any(loops["told"])  # planned out (custom plan), or never run (generic plan: a one-time filter)


_POOL_TYPES = (
    "text", "timestamptz", "int", "int", "int", "text[]", "int", "text[]", "timestamptz", "timestamptz", "int",
    "text[]", "int", "int", "timestamptz",
)  # fmt: skip
