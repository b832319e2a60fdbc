"""Streamable HTTP: health endpoints, bearer auth, and a real server process on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from agent_memory.errors import InvalidInput
from agent_memory.server.http import auth_options, create_app
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from agent_memory.store.migrate import latest_version
from tests.server.processes import http_server

pytestmark = pytest.mark.anyio

SECRET = "test-secret-with-at-least-32-bytes-of-entropy"


def token(
    tenant: str = "acme",
    agent: str = "agent-a",
    *,
    secret: str = SECRET,
    exp_in: int = 300,
    roles: tuple[str, ...] = ("writer",),
    audience: str = "agent-memory",
) -> str:
    claims = {"sub": agent, "tenant": tenant, "roles": list(roles), "exp": int(time.time()) + exp_in, "aud": audience}
    return jwt.encode(claims, secret, algorithm="HS256")


@asynccontextmanager
async def http_client(db: Database, settings: Settings, bearer: str | None) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(db, settings)
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765", headers=headers
        ) as client,
    ):
        yield client


async def test_health_and_readiness(db: Database, settings: Settings) -> None:
    """/healthz answers while the process lives; /readyz checks the database and the schema version."""
    open_settings = settings.model_copy(update={"auth": "none"})
    async with http_client(db, open_settings, None) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = (await client.get("/readyz")).json()
        assert ready == {"status": "ready", "schema_version": latest_version()}


async def test_tenants_come_from_verified_tokens(db: Database, settings: Settings) -> None:
    """Two tokens of two tenants: each remembers; neither can read the other's event."""
    secured = settings.model_copy(update={"auth": "required", "jwt_secret": SecretStr(SECRET)})
    ids = {}
    for tenant in ("acme", "globex"):
        async with (
            http_client(db, secured, token(tenant)) as http,
            Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool("remember", {"text": f"secret plans of {tenant}"})
            assert not result.is_error
            assert result.structured_content is not None
            ids[tenant] = result.structured_content["events"][0]["id"]
    async with db.transaction("acme") as tx:
        assert await tx.get_event(ids["acme"]) is not None
        assert await tx.get_event(ids["globex"]) is None


@pytest.mark.parametrize(
    "bearer",
    [
        None,
        token(exp_in=-3600),
        token(secret="another-secret-of-sufficient-length-0000"),
        "not.a.jwt",
        token().rsplit(".", 1)[0] + ".",  # signature stripped
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + token().split(".")[1] + ".",  # alg: none
        token(audience="someone-else"),
    ],
    ids=["missing", "expired", "wrong-key", "garbage", "stripped", "alg-none", "wrong-audience"],
)
async def test_bad_tokens_get_401(db: Database, settings: Settings, bearer: str | None) -> None:
    """No token, an expired one, one signed with another key, or garbage: 401 with WWW-Authenticate."""
    secured = settings.model_copy(
        update={"auth": "required", "jwt_secret": SecretStr(SECRET), "jwt_audience": "agent-memory"}
    )
    async with http_client(db, secured, bearer) as client:
        response = await client.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert response.status_code == 401
    assert "Bearer" in response.headers.get("www-authenticate", "")


async def test_unsafe_configurations_are_refused() -> None:
    """No auth on a non-loopback bind is refused before serving; required auth with no JWT secret or JWKS
    accepts API keys only: every JWT is refused."""
    with pytest.raises(InvalidInput, match="loopback"):
        auth_options(Settings(auth="none", http_host="0.0.0.0"))  # noqa: S104 - the point of the test
    keys_only = auth_options(Settings(auth="required"))["token_verifier"]
    assert await keys_only.verify_token(token()) is None


async def test_a_real_http_server_process(database_url: str) -> None:
    """`agent-memory serve --http` on loopback: /healthz over a socket, a tool call, SIGTERM stops it."""
    async with http_server(database_url, auth="none") as server:
        async with httpx2.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/readyz")).json()["status"] == "ready"
        async with Client(server.mcp_url) as client:
            result = await client.call_tool("remember", {"text": "over a real socket"})
            assert not result.is_error
        server.process.terminate()
        assert await server.process.wait() == 0


async def test_roles_from_the_token_are_enforced_per_tool(db: Database, settings: Settings) -> None:
    """A reader may recall but not remember; the refusal names the role needed; a writer may not supersede."""
    secured = settings.model_copy(update={"auth": "required", "jwt_secret": SecretStr(SECRET)})
    async with (
        http_client(db, secured, token(roles=("reader",))) as http,
        Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as reader,
    ):
        refused = await reader.call_tool("remember", {"text": "may I?"})
        assert refused.is_error
        assert "forbidden: remember needs the writer role" in refused.content[0].text  # type: ignore[union-attr]
        assert not (await reader.call_tool("recall", {"query": "anything"})).is_error
    async with (
        http_client(db, secured, token(roles=("writer",))) as http,
        Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as writer,
    ):
        decision = await writer.call_tool("remember", {"text": "Use tabs.", "kind": "decision"})
        assert decision.structured_content is not None
        decision_id = decision.structured_content["events"][0]["decision_id"]
        refused = await writer.call_tool("supersede_decision", {"decision_id": decision_id, "text": "Use spaces."})
        assert "needs the curator role" in refused.content[0].text  # type: ignore[union-attr]


async def test_metrics_in_prometheus_text_format(db: Database, settings: Settings) -> None:
    """/metrics counts calls per action and status and exposes latency, bundle sizes and pool connections."""
    open_settings = settings.model_copy(update={"auth": "none"})
    async with (
        http_client(db, open_settings, None) as http,
        Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as client,
    ):
        await client.call_tool("remember", {"text": "counted"})
        await client.call_tool("recall", {"query": "counted"})
        await client.call_tool("remember", {"text": "x", "refs": ["evt_01M8G6QWH5DRT8XFQ9KRMF7238"]})
        text = (await http.get("/metrics")).text
    assert 'agent_memory_requests_total{action="remember",status="ok"} 1.0' in text
    assert 'agent_memory_requests_total{action="remember",status="not_found"} 1.0' in text
    assert 'agent_memory_request_seconds_count{action="recall",status="ok"} 1.0' in text
    assert 'agent_memory_bundle_tokens_count{section="evidence"} 1.0' in text
    assert 'agent_memory_db_connections{state="in_use"}' in text
    assert 'agent_memory_recall_paths_total{path="cold"} 1.0' in text


@pytest.mark.parametrize(("origin", "status"), [("http://127.0.0.1:8765", 200), ("https://evil.example", 403)])
async def test_browser_origins_are_checked(db: Database, settings: Settings, origin: str, status: int) -> None:
    """A request from the server's own origin is served; one from a foreign page is refused (DNS rebinding)."""
    open_settings = settings.model_copy(update={"auth": "none"})
    async with http_client(db, open_settings, None) as client:
        response = await client.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={
                "Accept": "application/json, text/event-stream",
                "Origin": origin,
                "MCP-Protocol-Version": "2025-11-25",
            },
        )
    assert response.status_code == status


async def test_a_token_cannot_act_as_another_agent(db: Database, settings: Settings) -> None:
    """Over HTTP the agent is the token's subject: naming another agent_id is refused."""
    secured = settings.model_copy(update={"auth": "required", "jwt_secret": SecretStr(SECRET)})
    async with (
        http_client(db, secured, token(agent="agent-a")) as http,
        Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as client,
    ):
        refused = await client.call_tool("remember", {"text": "as b", "agent_id": "agent-b"})
        assert refused.is_error
        assert "this token acts for 'agent-a'" in refused.content[0].text  # type: ignore[union-attr]
        same = await client.call_tool("remember", {"text": "as a", "agent_id": "agent-a"})
        assert not same.is_error
