"""Row-level security, the second wall between tenants: tenant transactions run as ``agent_memory_app`` with
their tenant set, so a query that forgets its tenant filter still sees and writes only that tenant's rows.

The full-text search functions (migration 0006) run as their owner, whom row-level security does not hold when it
is a superuser or BYPASSRLS: they keep to the transaction's tenant themselves, and only the app role may run them."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from mcp.shared.exceptions import MCPError

from agent_memory.errors import Forbidden
from agent_memory.server.commands import _schema_report
from agent_memory.settings import Settings
from agent_memory.store.database import APP_ROLE, CHANGES_CHANNEL, TABLES, Database
from tests.conftest import make_client, with_database
from tests.helpers import call

pytestmark = pytest.mark.anyio

WORDS = "The billing service retries failed refunds three times before paging on-call."
DECISION = "Refunds go back to the original payment method only."

SECURITY = """
SELECT 'table ' || c.relname || ' rls=' || c.relrowsecurity || ' forced=' || c.relforcerowsecurity
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
UNION ALL
SELECT 'policy ' || tablename || ' ' || policyname || ' ' || permissive || ' ' || array_to_string(roles, ',') || ' '
       || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT 'grant ' || table_name || ' ' || privilege_type
FROM information_schema.role_table_grants WHERE grantee = 'agent_memory_app'
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' definer=' || p.prosecdef || ' volatility=' || p.provolatile::text
       || ' parallel=' || p.proparallel::text
       || ' config=' || coalesce(array_to_string(p.proconfig, ';'), '') || ' acl=' || coalesce(p.proacl::text, '')
       || ' body=' || md5(p.prosrc)
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')  -- not pgvector's
"""
SEARCH = "refund | bill"  # both tenants' words match
TAGS = ["billing"]  # both tenants' messages carry it
SEARCHES = {  # SECURITY DEFINER (they bypass row-level security): how each is called, and the plain query it mirrors
    "chunks_matching": (
        "SELECT id FROM chunks_matching('infinity', to_tsquery('english', $1), 1000)",
        "SELECT id FROM chunks WHERE tsv @@ to_tsquery('english', $1)",
        SEARCH,
    ),
    "lexical_candidates": (  # since '-infinity': any match of any term (its reach: tests/store/test_lexical_reach.py)
        "SELECT id FROM lexical_candidates("
        "'infinity', tsvector_to_array(to_tsvector('english', $1)), 1000, '-infinity')",
        "SELECT id FROM chunks WHERE tsv @@ websearch_to_tsquery('english', $1)",
        "refund or bill",
    ),
    "chunks_tagged": (
        "SELECT id FROM chunks_tagged('infinity', $1::text[], 1000)",
        "SELECT id FROM chunks WHERE tags && $1::text[]",
        TAGS,
    ),
    "decisions_matching": (
        "SELECT id FROM decisions_matching('infinity', to_tsquery('english', $1), 1000)",
        "SELECT id FROM decisions WHERE tsv @@ to_tsquery('english', $1)",
        SEARCH,
    ),
}
SEARCH_FUNCTIONS = tuple(sorted(SEARCHES))


@dataclass
class Tenant:
    """What one tenant wrote through its own MCP client."""

    name: str
    ids: set[str] = field(default_factory=set)


def _ids(receipt: dict[str, Any]) -> set[str]:
    return {receipt["id"], *receipt["chunk_ids"], *(receipt[k] for k in ("decision_id", "task_id") if receipt[k])}


async def _write_the_same_words(db: Database, settings: Settings, name: str) -> Tenant:
    tenant = Tenant(name)
    async with make_client(db, settings.model_copy(update={"tenant": name})) as client:
        for text, kind in ((WORDS, "message"), (DECISION, "decision"), ("Port the refunds job", "task_update")):
            tags = TAGS if kind == "message" else []
            receipt = (await call(client, "remember", text=text, kind=kind, session_id="s", tags=tags))["events"][0]
            assert receipt["duplicate_of"] is None  # the other tenant's identical text is no original of this one
            tenant.ids |= _ids(receipt)
        tenant.ids.add((await call(client, "handoff_packet", to_agent="b", task="Refunds: carry on"))["id"])
    return tenant


@pytest.fixture
async def two_tenants(db: Database, settings: Settings) -> tuple[Tenant, Tenant]:
    """Tenants ``a`` and ``b`` that wrote the same words: a message, a decision, a task and a handoff."""
    return await _write_the_same_words(db, settings, "a"), await _write_the_same_words(db, settings, "b")


async def test_tenant_transactions_run_as_the_app_role(database_url: str) -> None:
    """Inside a tenant transaction the queries run as agent_memory_app, which is no superuser, cannot bypass
    row-level security and owns no table, although the pool logs in as a superuser; the role and the tenant
    end with the transaction, on the same connection."""
    db = await Database.connect(database_url, max_size=1, run_migrations=False)
    try:
        async with db.transaction("a") as tx:
            conn = tx._conn
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            assert await conn.fetchval("SELECT current_setting('agent_memory.tenant')") == "a"
            login = await conn.fetchval("SELECT session_user")
            assert not await conn.fetchval(
                "SELECT rolsuper OR rolbypassrls OR rolcanlogin FROM pg_roles WHERE rolname = current_user"
            )
            assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = session_user")
            owners = await conn.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            assert [row[0] for row in owners] == [login]
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert await conn.fetchval("SELECT current_user") == login
            assert await conn.fetchval("SELECT current_setting('agent_memory.tenant', true)") == ""
    finally:
        await db.close()


async def test_another_tenants_rows_are_invisible_without_the_filter(
    db: Database, two_tenants: tuple[Tenant, Tenant]
) -> None:
    """Queries with no tenant filter at all, in tenant a's transaction, return a's rows and none of b's,
    in every table."""
    a, b = two_tenants
    async with db.transaction("a") as tx:
        seen: set[str] = set()
        for table in TABLES:
            for row in await tx._conn.fetch(f"SELECT * FROM {table}"):
                assert row["id" if table == "tenants" else "tenant_id"] == "a", table
                if isinstance(row.get("id"), str):
                    seen.add(row["id"])
        assert await tx._conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = 'b'") == 0
    assert a.ids <= seen
    assert not b.ids & seen
    async with db.pool.acquire() as conn:  # the login user, a superuser: b's rows are there
        assert await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = 'b'") == 3


async def test_another_tenants_rows_cannot_be_written(db: Database, two_tenants: tuple[Tenant, Tenant]) -> None:
    """In tenant a's transaction, unfiltered UPDATE and DELETE change only a's rows; inserting a row of b or
    moving a row to b is refused and rolls the transaction back."""
    a, _ = two_tenants
    async with db.transaction("a") as tx:
        assert await tx._conn.execute("UPDATE decisions SET text = 'rewritten'") == "UPDATE 1"
        assert await tx._conn.execute("DELETE FROM handoffs") == "DELETE 1"
        assert await tx._conn.execute("UPDATE tenants SET derived_stale = true") == "UPDATE 1"
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT text FROM decisions WHERE tenant_id = 'b'") == DECISION
        assert await conn.fetchval("SELECT count(*) FROM handoffs WHERE tenant_id = 'b'") == 1
        assert await conn.fetchval("SELECT derived_stale FROM tenants WHERE id = 'b'") is False
    attacks = [
        "INSERT INTO tasks SELECT 'b', id || '_copy', title, status, owner, session_id, channel, sensitivity, note,"
        " token_est, last_event_id, created_at, updated_at FROM tasks",
        "UPDATE tasks SET tenant_id = 'b'",
        "INSERT INTO audit_log (tenant_id, principal, action, success) VALUES ('b', 'mallory', 'recall', true)",
        "INSERT INTO tenants (id) VALUES ('c')",
    ]

    async def attempt(attack: str) -> None:
        async with db.transaction("a") as tx:
            await tx._conn.execute("DELETE FROM chunks")  # rolled back with the refused statement
            await tx._conn.execute(attack)

    for attack in attacks:
        with pytest.raises(Forbidden, match="row-level security"):
            await attempt(attack)
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = 'b'") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE principal = 'mallory'") == 0
        assert await conn.fetchval("SELECT count(*) FROM tenants WHERE id = 'c'") == 0
        chunks = {row["id"] for row in await conn.fetch("SELECT id FROM chunks WHERE tenant_id = 'a'")}
    assert chunks == {i for i in a.ids if i.startswith("chk_")}


async def test_without_a_tenant_no_rows_are_visible(db: Database, database_url: str, two_tenants: object) -> None:
    """As the app role with no tenant set (never set on the connection, set empty, or set by a transaction
    that has ended), every tenant table looks empty and nothing can be written."""
    del two_tenants
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"SET ROLE {APP_ROLE}")

        async def visible() -> dict[str, int]:
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}

        assert await conn.fetchval("SELECT current_setting('agent_memory.tenant', true)") is None
        assert set((await visible()).values()) == {0}
        async with conn.transaction():
            await conn.execute("SELECT set_config('agent_memory.tenant', 'a', true)")
            assert (await visible())["events"] == 3
        assert await conn.fetchval("SELECT current_setting('agent_memory.tenant', true)") == ""
        assert set((await visible()).values()) == {0}
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute("INSERT INTO tenants (id) VALUES ('')")
    finally:
        await conn.close()
    async with db.transaction("") as tx:
        assert await tx._conn.fetchval("SELECT count(*) FROM events") == 0


async def test_two_tenants_with_the_same_words_never_see_each_others_data_or_ids(
    db: Database, settings: Settings, two_tenants: tuple[Tenant, Tenant]
) -> None:
    """Tenants a and b wrote the same words: every id differs, and each one's recall, by the words both used,
    cites only its own records; the other's ids read as not found."""
    a, b = two_tenants
    assert not a.ids & b.ids
    for me, other in ((a, b), (b, a)):
        async with make_client(db, settings.model_copy(update={"tenant": me.name})) as client:
            bundle = await call(client, "recall", query="billing refunds retries", session_id="s")
            text = json.dumps(bundle)
            assert WORDS in text
            assert DECISION in text
            cited = {ref for s in bundle["sections"] for item in s["items"] for ref in item["refs"]}
            assert cited
            assert cited <= me.ids
            assert not any(ident in text for ident in other.ids)
            for ident in other.ids:
                kind = {"evt": "events", "dec": "decisions", "hnd": "handoffs"}.get(ident[:3])
                if kind:
                    with pytest.raises(MCPError) as caught:
                        await client.read_resource(f"memory://{kind}/{ident}")
                    assert caught.value.code == -32002


async def test_every_tenant_table_forces_row_level_security(db: Database) -> None:
    """Every table but schema_migrations is a tenant table with forced row-level security and the tenant
    policy; the app role cannot touch schema_migrations. A new table without a policy fails here."""
    async with db.pool.acquire() as conn:
        tables = {
            row["relname"]: (row["relrowsecurity"], row["relforcerowsecurity"])
            for row in await conn.fetch(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
            )
        }
        policies = {row[0] for row in await conn.fetch("SELECT tablename FROM pg_policies WHERE schemaname = 'public'")}
        migrations_grants = await conn.fetchval(
            "SELECT count(*) FROM information_schema.role_table_grants"
            " WHERE grantee = $1 AND table_name = 'schema_migrations'",
            APP_ROLE,
        )
    assert set(tables) == {*TABLES, "schema_migrations"}
    assert all(tables[t] == (True, True) for t in TABLES)
    assert tables["schema_migrations"] == (False, False)
    assert policies == set(TABLES)
    assert migrations_grants == 0


async def _security(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return sorted(row[0] for row in await conn.fetch(SECURITY))
    finally:
        await conn.close()


async def test_schema_sql_builds_the_same_security(database_url: str, empty_database: str) -> None:
    """schema.sql and the migrations give the same tables the same row-level security, policies and grants."""
    schema = resources.files("agent_memory.store").joinpath("sql/schema.sql").read_text(encoding="utf-8")
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(schema)
    finally:
        await conn.close()
    migrated = await _security(database_url)
    assert [line for line in migrated if line != "table schema_migrations rls=false forced=false"] == (
        await _security(empty_database)
    )
    assert "grant events INSERT" in migrated
    assert "grant events UPDATE" not in migrated  # events are append-only
    assert any(line.startswith("function chunks_matching(") and "definer=true" in line for line in migrated)


async def test_notifications_reach_a_listener_running_as_the_app_role(db: Database) -> None:
    """A change NOTIFYed by a tenant transaction reaches ``listen``, whose connection holds only the app role."""
    async with db.listen(CHANGES_CHANNEL) as notifications:
        async with db.transaction("a") as tx:
            await tx.notify_change("s")
        with anyio.fail_after(10):
            assert await notifications.receive() == (CHANGES_CHANNEL, "a/s")


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
async def owner_database(server_dsn: str) -> AsyncIterator[str]:
    """A database owned by a login that is no superuser and cannot bypass row-level security, to which a
    superuser granted the (pre-created) app role, as an operator of an external server would."""
    name = f"am_owner_{os.getpid()}_{id(object())}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN")
        await admin.execute(f"CREATE DATABASE {name} OWNER {name}")
        # as docs/deploy.md tells an operator whose login may not create roles (another test may have made it)
        await admin.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}')"
            f" THEN CREATE ROLE {APP_ROLE} NOLOGIN; END IF; END $$"
        )
        await admin.execute(f"GRANT {APP_ROLE} TO {name}")
        conn = await asyncpg.connect(with_database(server_dsn, name))
        try:  # an extension needs a superuser: the operator would install it
            await conn.execute(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
                " THEN CREATE EXTENSION vector; END IF; END $$"
            )
        finally:
            await conn.close()
        yield _as_user(with_database(server_dsn, name), name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


async def test_an_ordinary_owner_migrates_and_serves_but_maintenance_refuses(owner_database: str) -> None:
    """A login that is neither superuser nor BYPASSRLS can migrate and run tenant transactions; the forced
    policies hold it too, so maintenance across tenants says what it needs instead of seeing nothing."""
    db = await Database.connect(owner_database, max_size=2)
    try:
        async with db.transaction("a") as tx:
            await tx.ensure_tenant()
            assert await tx._conn.fetchval("SELECT current_user") == APP_ROLE
        async with db.transaction("b") as tx:
            await tx.ensure_tenant()
            assert await tx.count_rows("tenants") == 1
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 0
        with pytest.raises(Forbidden, match="bypasses row-level security"):
            await db.tenants()
        report = await _schema_report(db)  # `agent-memory doctor`: search works, but without its indexes
        assert report["search_indexed"] is False
        assert "BYPASSRLS" in report["search_hint"]
    finally:
        await db.close()


async def _found(conn: asyncpg.Connection) -> dict[str, set[str]]:
    """The ids each search function finds on ``conn``, as it is (its role, its tenant)."""
    found = {}
    for function, (called, _, value) in SEARCHES.items():
        found[function] = {row["id"] for row in await conn.fetch(called, value)}
    return found


async def _admitted(conn: asyncpg.Connection) -> dict[str, set[str]]:
    """The ids the plain query of each search sees on ``conn``, with no tenant filter: what row-level security
    admits."""
    admitted = {}
    for function, (_, plain, value) in SEARCHES.items():
        admitted[function] = {row["id"] for row in await conn.fetch(plain, value)}
    return admitted


async def test_search_functions_find_only_their_transactions_tenant(
    db: Database, two_tenants: tuple[Tenant, Tenant]
) -> None:
    """The search functions run as their owner, a superuser whom row-level security does not hold; yet called as
    agent_memory_app in tenant a's transaction they find exactly what the tenant policy admits to a's plain query:
    a's chunks and decisions, none of b's, though b wrote the same words. So do the queries that call them."""
    for me, other in (two_tenants, two_tenants[::-1]):
        async with db.transaction(me.name) as tx:
            assert await tx._conn.fetchval("SELECT current_user") == APP_ROLE
            found, admitted = await _found(tx._conn), await _admitted(tx._conn)
            terms, tsquery = await tx.query_terms("billing refunds")
            decisions = await tx.decisions_matching(datetime.max.replace(tzinfo=UTC), tsquery, 200)
            pool = await tx.evidence_pool(
                datetime.max.replace(tzinfo=UTC), terms, [], [], None,
                lexical=100, recent=0, pinned=0, tagged=0, windowed=0, corpus_sample=1000, lexical_reach=5000,
            )  # fmt: skip
            tagged = await tx.evidence_pool(
                datetime.max.replace(tzinfo=UTC), [], TAGS, [], None,
                lexical=0, recent=0, pinned=0, tagged=100, windowed=0, corpus_sample=1000, lexical_reach=5000,
            )  # fmt: skip
        assert found == admitted
        assert all(found.values())
        assert set().union(*found.values()) <= me.ids
        assert not set().union(*found.values()) & other.ids
        assert {d.id for d, _ in decisions} == found["decisions_matching"]
        assert {c.id for c in pool} == found["lexical_candidates"] == found["chunks_matching"]
        assert {c.id for c in tagged} == found["chunks_tagged"]
    async with db.pool.acquire() as conn:
        owners = await conn.fetch(
            "SELECT r.rolsuper OR r.rolbypassrls FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE p.proname = ANY($1::text[])",
            list(SEARCH_FUNCTIONS),
        )
    assert [row[0] for row in owners] == [True] * len(SEARCHES)  # their own filter is all that kept b's rows out


async def test_search_functions_find_nothing_without_a_tenant(
    db: Database, database_url: str, two_tenants: object
) -> None:
    """With no tenant set, the search functions find nothing: as the login that owns them (a superuser: no
    row-level security at all), and as agent_memory_app with the tenant never set, set empty, or set by a
    transaction that has ended."""
    del two_tenants
    nothing = {function: set() for function in SEARCH_FUNCTIONS}
    conn = await asyncpg.connect(database_url)
    try:
        assert await _found(conn) == nothing
        await conn.execute(f"SET ROLE {APP_ROLE}")
        assert await _found(conn) == nothing
        async with conn.transaction():
            await conn.execute("SELECT set_config('agent_memory.tenant', 'a', true)")
            assert all((await _found(conn)).values())
        assert await _found(conn) == nothing
    finally:
        await conn.close()
    async with db.transaction("") as tx:
        assert await _found(tx._conn) == nothing


async def test_search_functions_may_be_run_by_the_app_role_alone(db: Database) -> None:
    """The schema's SECURITY DEFINER functions are exactly the search functions, each STABLE, with its search_path
    pinned (pg_catalog, the schema, pg_temp last) and EXECUTE granted to agent_memory_app and its owner only, not
    to PUBLIC: any other role is refused."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT p.proname, p.provolatile::text, p.proconfig,"
            " has_function_privilege('public', p.oid, 'EXECUTE') AS public,"
            " array(SELECT coalesce(r.rolname, 'PUBLIC') FROM aclexplode(p.proacl) a"
            "       LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE a.privilege_type = 'EXECUTE'"
            "       ORDER BY a.grantee = p.proowner DESC) AS runners"
            " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef ORDER BY p.proname"
        )
        login = await conn.fetchval("SELECT current_user")
        stranger = f"am_stranger_{os.getpid()}"
        await conn.execute(f"CREATE ROLE {stranger} NOLOGIN")
        try:
            for function in SEARCH_FUNCTIONS:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL ROLE {stranger}")
                    await conn.execute("SELECT set_config('agent_memory.tenant', 'a', true)")
                    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"function {function}"):
                        await conn.fetch(SEARCHES[function][0], SEARCHES[function][2])
        finally:
            await conn.execute(f"DROP ROLE {stranger}")
    assert [row["proname"] for row in rows] == list(SEARCH_FUNCTIONS)
    for row in rows:
        assert row["provolatile"] == "s"
        assert row["proconfig"] == ["search_path=pg_catalog, public, pg_temp"]
        assert not row["public"]
        assert row["runners"] == [login, APP_ROLE]


async def test_an_ordinary_owners_search_functions_keep_to_the_tenant_too(owner_database: str) -> None:
    """Owned by a login that does not bypass row-level security, the search functions are held by the forced
    policies (so PostgreSQL cannot use the GIN indexes for them): they find the same rows, a tenant's own, and
    nothing without a tenant."""
    db = await Database.connect(owner_database, max_size=2)
    try:
        settings = Settings(database_url=owner_database, tenant="local", agent="agent-a")
        a, b = await _write_the_same_words(db, settings, "a"), await _write_the_same_words(db, settings, "b")
        for me, other in ((a, b), (b, a)):
            async with db.transaction(me.name) as tx:
                found, admitted = await _found(tx._conn), await _admitted(tx._conn)
            assert found == admitted
            assert all(found.values())
            assert set().union(*found.values()) <= me.ids
            assert not set().union(*found.values()) & other.ids
        async with db.pool.acquire() as conn:
            assert await _found(conn) == {function: set() for function in SEARCH_FUNCTIONS}
            assert not await conn.fetchval(
                "SELECT bool_or(r.rolsuper OR r.rolbypassrls) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner"
                " WHERE p.proname = ANY($1::text[])",
                list(SEARCH_FUNCTIONS),
            )
    finally:
        await db.close()
