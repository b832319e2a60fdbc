"""View-change notifications over streamable HTTP, where one server serves many tenants: each update reaches
only the listeners of the tenant whose view changed, and only those whose channels may read the view."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx2
import jwt
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import Subscription
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr

from agent_memory import views
from agent_memory.server.http import create_app
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.server.test_http import SECRET, token

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(db: Database, settings: Settings) -> AsyncIterator[str]:
    """Our HTTP app on a loopback socket (a listen stream is SSE: it needs a real connection, which the ASGI
    test transport does not stream); yields the MCP endpoint's URL. The socket listens before uvicorn starts,
    so clients may connect at once: they wait in its backlog until the app is up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    secured = settings.model_copy(update={"auth": "required", "jwt_secret": SecretStr(SECRET), "http_port": port})
    server = uvicorn.Server(uvicorn.Config(create_app(db, secured), log_config=None, lifespan="on"))
    with sock:
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: server.serve(sockets=[sock]))
            try:
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                server.should_exit = True


async def _client(stack: AsyncExitStack, url: str, bearer: str, **options: object) -> Client:
    http = await stack.enter_async_context(httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}))
    return await stack.enter_async_context(Client(streamable_http_client(url, http_client=http), **options))  # type: ignore[arg-type]


async def _next_uri(subscription: Subscription, within: float = 10) -> str | None:
    """The URI of the next update, or None when none comes ``within`` seconds."""
    with anyio.move_on_after(within):
        event = await subscription.__anext__()
        return str(event.uri)  # type: ignore[union-attr]
    return None


async def test_a_view_change_is_announced_to_its_tenant_only(db: Database, settings: Settings) -> None:
    """Listeners of two tenants on one server: acme's rules change reaches acme's listener; globex's hears
    nothing until globex's own rules change (which acme's listener does not hear)."""
    async with serving(db, settings) as url, AsyncExitStack() as stack:
        acme = await _client(stack, url, token("acme", roles=("reader",)))
        globex = await _client(stack, url, token("globex", roles=("reader",)))
        acme_hears = await stack.enter_async_context(acme.listen(resource_subscriptions=["memory://rules"]))
        globex_hears = await stack.enter_async_context(globex.listen(resource_subscriptions=["memory://rules"]))
        await views.set_view(db, "acme", "rules", "Acme's own rules.", "test")
        assert await _next_uri(acme_hears) == "memory://rules"
        await views.set_view(db, "globex", "rules", "Globex's own rules.", "test")
        assert await _next_uri(globex_hears) == "memory://rules"  # its first event: not acme's change
        assert await _next_uri(acme_hears, within=1) is None, "globex's change reached acme"


async def test_a_view_its_channels_may_not_read_is_not_announced(db: Database, settings: Settings) -> None:
    """A team-only token listening on memory://preferences and memory://rules hears of the rules, never of the
    (private) preferences; a private token hears both."""
    team_token = token("acme", roles=("reader",))
    async with serving(db, settings) as url, AsyncExitStack() as stack:
        uris = ["memory://preferences", "memory://rules"]
        team = await _client(stack, url, _with_channels(team_token, ["team"]))
        private = await _client(stack, url, _with_channels(team_token, ["private"]))
        team_hears = await stack.enter_async_context(team.listen(resource_subscriptions=uris))
        private_hears = await stack.enter_async_context(private.listen(resource_subscriptions=uris))
        await views.set_view(db, "acme", "preferences", "Prefers British spelling.", "test")
        await views.set_view(db, "acme", "rules", "Be brief.", "test")
        assert await _next_uri(team_hears) == "memory://rules"
        assert await _next_uri(private_hears) == "memory://preferences"
        assert await _next_uri(private_hears) == "memory://rules"


async def test_a_caller_without_a_role_cannot_listen(db: Database, settings: Settings) -> None:
    """Listening needs the role that reading needs; the refusal says so."""
    async with serving(db, settings) as url, AsyncExitStack() as stack:
        nobody = await _client(stack, url, token("acme", roles=()))
        with pytest.raises(MCPError, match="read_resource needs the reader role"):
            async with nobody.listen(resource_subscriptions=["memory://rules"]):
                pytest.fail("a caller without a role listens")


async def test_clients_of_earlier_protocol_versions_are_offered_no_subscriptions(
    db: Database, settings: Settings
) -> None:
    """A stateless server cannot push to a 2025-era client: it is told so (no `subscribe` capability)
    rather than subscribing and waiting forever."""
    async with serving(db, settings) as url, AsyncExitStack() as stack:
        legacy = await _client(stack, url, token("acme", roles=("reader",)), mode="legacy")
        resources = legacy.server_capabilities.resources
        assert resources is not None
        assert not resources.subscribe


def _with_channels(bearer: str, channels: list[str]) -> str:
    claims = jwt.decode(bearer, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    return jwt.encode({**claims, "channels": channels}, SECRET, algorithm="HS256")
