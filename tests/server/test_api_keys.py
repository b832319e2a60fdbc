"""Tenant API keys and signed requests over HTTP: created, listed and revoked from the CLI, checked on every
request by every replica, and signatures that hold once within their window."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent_memory import keys
from agent_memory.errors import InvalidInput, NotFound
from agent_memory.ids import new_id
from agent_memory.server.http import create_app
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from agent_memory.store.queries import QUERIES
from tests.helpers import call, call_error, database_text, run_cli
from tests.server.processes import http_server

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:8765"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def replica(database_url: str, settings: Settings) -> AsyncIterator[httpx2.AsyncClient]:
    """One server replica (its own pool and app) requiring auth, and a plain HTTP client of it."""
    db = await Database.connect(database_url, max_size=5, run_migrations=False)
    app = create_app(db, settings.model_copy(update={"auth": "required"}))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=URL) as http,
        ):
            yield http
    finally:
        await db.close()


@asynccontextmanager
async def mcp_client(http: httpx2.AsyncClient, auth: httpx2.Auth | None = None) -> AsyncIterator[Client]:
    """A real MCP client over ``http`` (which carries the app); ``auth`` signs or sets the bearer."""
    http.auth = auth
    async with Client(streamable_http_client(f"{URL}/mcp", http_client=http)) as client:
        yield client


class Bearer(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx2.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


async def test_keys_from_the_cli_are_shown_once_stored_as_hashes_and_revoked(database_url: str, db: Database) -> None:
    """`keys create` prints the key once; the database holds only its hash; `list` never shows it; `revoke`
    marks it; an unknown id is a clear error; every command leaves an audit row."""
    created = run_cli(database_url, "keys", "create", "--tenant", "acme", "--role", "writer", "--name", "ingest")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id, secret = keys.split(key)
    assert secret is not None
    assert "shown this once" in created.stderr
    stored = await database_text(db)
    assert secret not in stored
    assert key_id in stored
    assert keys.digest(key) in stored

    listed = run_cli(database_url, "keys", "list", "--tenant", "acme")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert "writer" in listed.stdout
    assert "active" in listed.stdout
    assert secret not in listed.stdout
    assert key_id not in run_cli(database_url, "keys", "list", "--tenant", "globex").stdout

    revoked = run_cli(database_url, "keys", "revoke", "--tenant", "acme", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run_cli(database_url, "keys", "list", "--tenant", "acme").stdout
    other_tenant = run_cli(database_url, "keys", "revoke", "--tenant", "globex", key_id)
    assert other_tenant.returncode == 1
    assert key_id in other_tenant.stderr

    async with db.transaction("acme") as tx:
        audited = [(row.action, row.success) for row in await tx.audit_since(EPOCH, 0, 100)]
    assert audited == [("keys_create", True), ("keys_list", True), ("keys_revoke", True), ("keys_list", True)]
    async with db.transaction("globex") as tx:
        audited = [(row.action, row.success) for row in await tx.audit_since(EPOCH, 0, 100)]
    assert audited == [("keys_list", True), ("keys_revoke", False)]


async def test_domain_refuses_bad_roles_names_and_unknown_ids(db: Database) -> None:
    """Bad input to the key functions names the field and what is allowed."""
    with pytest.raises(InvalidInput, match="role"):
        await keys.create(db, "acme", role="root", name="x")
    with pytest.raises(InvalidInput, match="name"):
        await keys.create(db, "acme", role="reader", name=" ")
    with pytest.raises(InvalidInput, match="agent"):
        await keys.create(db, "acme", role="reader", name="x", agent_id="a" * 129)
    with pytest.raises(NotFound, match="key_id"):
        await keys.revoke(db, "acme", "key_01JABCDEFGHJKMNPQRSTVWXYZ0")


async def test_a_key_authenticates_as_its_tenant_and_revocation_reaches_every_replica(
    database_url: str, db: Database, settings: Settings
) -> None:
    """A writer key works on two replicas; once revoked (by the CLI) both refuse it on the next request."""
    made = await keys.create(db, "acme", role="writer", name="svc")
    async with replica(database_url, settings) as one, replica(database_url, settings) as two:
        for http in (one, two):
            async with mcp_client(http, Bearer(made.key)) as client:
                written = await call(client, "remember", text="the deploy runs at noon", agent_id="scheduler")
                assert written["events"][0]["id"].startswith("evt_")
        assert run_cli(database_url, "keys", "revoke", "--tenant", "acme", made.row.id).returncode == 0
        for http in (one, two):
            http.auth = Bearer(made.key)
            refused = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert refused.status_code == 401
    async with db.transaction("acme") as tx:
        audited = await tx.audit_since(EPOCH, 0, 100)
    assert {row.principal for row in audited if row.action == "remember"} == {f"key:{made.row.id}"}
    assert (await keys.list_keys(db, "acme"))[0].last_used_at is not None


async def test_wrong_unknown_and_malformed_keys_get_401(database_url: str, db: Database, settings: Settings) -> None:
    """A key with a wrong secret, an unknown id, a bare id without a signature, or garbage: all 401."""
    made = await keys.create(db, "acme", role="writer", name="svc")
    bad = [
        made.key[:-4] + "AAAA",
        made.row.id,
        new_id("api_key") + ".whatever",
        "key_nonsense.x",
        made.key + ".",
    ]
    async with replica(database_url, settings) as http:
        for token in bad:
            http.auth = Bearer(token)
            response = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert response.status_code == 401, token
        metrics = (await http.get("/metrics")).text
    counted = re.search(r'(?m)^agent_memory_auth_failures_total\{kind="api_key"\} (\d+)', metrics)
    assert counted is not None
    assert int(float(counted[1])) == len(bad)


async def test_roles_and_agent_binding_of_keys(database_url: str, db: Database, settings: Settings) -> None:
    """A reader key cannot write (the refusal names the role); a key bound to an agent acts only as it;
    a key of one tenant never sees another tenant's memory."""
    reader = await keys.create(db, "acme", role="reader", name="dashboard")
    bound = await keys.create(db, "acme", role="writer", name="bot", agent_id="bot-1")
    other = await keys.create(db, "globex", role="writer", name="svc")
    async with replica(database_url, settings) as http:
        async with mcp_client(http, Bearer(reader.key)) as client:
            assert "writer role" in await call_error(client, "remember", text="may I?")
        async with mcp_client(http, Bearer(bound.key)) as client:
            assert "bot-1" in await call_error(client, "remember", text="as someone else", agent_id="bot-2")
            written = await call(client, "remember", text="the blue launch code is orchid", agent_id="bot-1")
        async with mcp_client(http, Bearer(other.key)) as client:
            bundle = await call(client, "recall", query="blue launch code orchid")
    assert written["events"][0]["id"] not in str(bundle)
    assert bundle["provenance"]["candidate_pool"] == 0


async def test_signed_requests_hold_once_within_their_window(
    database_url: str, db: Database, settings: Settings
) -> None:
    """A key that requires signatures: refused as a bearer; works signed; a replayed, stale, tampered or
    unsigned-but-timestamped request is refused with a reason; a revoked key's signature is refused too."""
    made = await keys.create(db, "acme", role="writer", name="signer", require_signature=True)
    async with replica(database_url, settings) as http:
        http.auth = Bearer(made.key)
        assert (await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)).status_code == 401

        async with mcp_client(http, keys.SignedRequestAuth(made.key)) as client:
            await call(client, "remember", text="signed and sealed")

        http.auth = None
        body = httpx2.Request("POST", f"{URL}/mcp", json=INITIALIZE).content
        now = int(time.time())
        signed = {
            **MCP_HEADERS,
            "Authorization": f"Bearer {made.row.id}",
            keys.TIMESTAMP_HEADER: str(now),
            keys.SIGNATURE_HEADER: keys.sign(made.key, "POST", "/mcp", now, body),
        }
        first = await http.post("/mcp", content=body, headers=signed)
        assert first.status_code == 200, first.text
        replayed = await http.post("/mcp", content=body, headers=signed)
        assert replayed.status_code == 401
        assert "replayed" in replayed.json()["error_description"]

        tampered = await http.post("/mcp", content=body.replace(b"2025", b"2024"), headers=signed)
        assert tampered.status_code == 401
        assert "bad signature" in tampered.json()["error_description"]

        old = now - 3600
        stale_headers = {**signed, keys.TIMESTAMP_HEADER: str(old)}
        stale_headers[keys.SIGNATURE_HEADER] = keys.sign(made.key, "POST", "/mcp", old, body)
        stale = await http.post("/mcp", content=body, headers=stale_headers)
        assert stale.status_code == 401
        assert "stale" in stale.json()["error_description"]
        assert "www-authenticate" in stale.headers

        unsigned = await http.post("/mcp", content=body, headers={**signed, keys.SIGNATURE_HEADER: ""})
        assert unsigned.status_code == 401
        odd = {**signed, keys.SIGNATURE_HEADER: "v1=\u00e9t\u00e9".encode("latin-1")}
        assert (await http.post("/mcp", content=body, headers=odd)).status_code == 401  # not a 500
        huge = await http.post("/mcp", content=body, headers={**signed, keys.TIMESTAMP_HEADER: "9" * 400})
        assert huge.status_code == 401
        assert "whole seconds" in huge.json()["error_description"]

        await keys.revoke(db, "acme", made.row.id)
        fresh = int(time.time())
        revoked_headers = {**signed, keys.TIMESTAMP_HEADER: str(fresh)}
        revoked_headers[keys.SIGNATURE_HEADER] = keys.sign(made.key, "POST", "/mcp", fresh, body + b" ")
        revoked = await http.post("/mcp", content=body + b" ", headers=revoked_headers)
        assert revoked.status_code == 401
        assert "revoked" in revoked.json()["error_description"]


async def test_row_level_security_admits_one_key_to_a_lookup(database_url: str, db: Database) -> None:
    """The lookup transaction (no tenant) sees exactly the key it names; a tenant transaction sees only its
    own tenant's keys, even with the code's tenant filter left out."""
    first = await keys.create(db, "acme", role="reader", name="a")
    await keys.create(db, "acme", role="reader", name="b")
    await keys.create(db, "globex", role="reader", name="c")
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(QUERIES["enter_key_lookup"], first.row.id)
            assert [r["id"] for r in await conn.fetch("SELECT id FROM api_keys")] == [first.row.id]
            assert await conn.fetchval("SELECT count(*) FROM events") == 0
        async with conn.transaction():
            await conn.execute(QUERIES["enter_tenant"], "globex")
            assert await conn.fetchval("SELECT count(*) FROM api_keys") == 1
    finally:
        await conn.close()


async def test_keys_and_signed_requests_against_a_real_server_process(database_url: str, db: Database) -> None:
    """A real `serve --http` with no JWT configured: a signed client works over a socket, a replay of its
    request is refused, and a key revoked from the CLI is refused at once."""
    made = await keys.create(db, "acme", role="writer", name="signer", require_signature=True)
    async with http_server(database_url) as server:
        async with (
            httpx2.AsyncClient(auth=keys.SignedRequestAuth(made.key)) as http,
            Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
        ):
            await call(client, "remember", text="signed over a real socket")
        body = httpx2.Request("POST", server.mcp_url, json=INITIALIZE).content
        now = int(time.time())
        signed = {
            **MCP_HEADERS,
            "Authorization": f"Bearer {made.row.id}",
            keys.TIMESTAMP_HEADER: str(now),
            keys.SIGNATURE_HEADER: keys.sign(made.key, "POST", "/mcp", now, body),
        }
        async with httpx2.AsyncClient() as http:
            assert (await http.post(server.mcp_url, content=body, headers=signed)).status_code == 200
            assert (await http.post(server.mcp_url, content=body, headers=signed)).status_code == 401
            assert run_cli(database_url, "keys", "revoke", "--tenant", "acme", made.row.id).returncode == 0
            later = int(time.time()) + 1
            signed[keys.TIMESTAMP_HEADER] = str(later)
            signed[keys.SIGNATURE_HEADER] = keys.sign(made.key, "POST", "/mcp", later, body)
            refused = await http.post(server.mcp_url, content=body, headers=signed)
            assert refused.status_code == 401
            assert "revoked" in refused.json()["error_description"]


async def test_the_replay_window_is_kept_by_the_databases_clock(db: Database) -> None:
    """A replica whose clock is off lets a timestamp through that the database's clock finds stale: the signature
    is refused and not recorded, so the window by which signatures are forgotten cannot be outrun."""
    now = int(await db.pool.fetchval("SELECT extract(epoch FROM now())::bigint"))
    async with db.transaction("acme") as tx:
        await tx.ensure_tenant()
        assert await tx.remember_signature("v1=early", now - 600, 300) == (False, False)
        assert await tx.remember_signature("v1=late", now + 600, 300) == (False, False)
        assert await tx.remember_signature("v1=now", now, 300) == (True, True)
        assert await tx.remember_signature("v1=now", now, 300) == (True, False)  # a replay
        seen = await tx._conn.fetchval("SELECT array_agg(signature ORDER BY signature) FROM request_signatures")
    assert seen == ["v1=now"]
