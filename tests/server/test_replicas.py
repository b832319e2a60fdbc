"""Two replicas on one database behind alternating requests: stateless HTTP, shared state, fresh hot sets,
and rate limits shared through Redis."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import asyncpg
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from redis.asyncio import Redis

from agent_memory.tokens import mint
from tests.server.processes import http_server

pytestmark = pytest.mark.anyio
SECRET = "replica-test-secret-with-32-bytes-or-more"
REDIS_URL = os.environ.get("AGENT_MEMORY_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="AGENT_MEMORY_TEST_REDIS_URL names no Redis to test with")


@asynccontextmanager
async def replicas(database_url: str, count: int = 2, **settings: str) -> AsyncIterator[list[str]]:
    """``count`` `agent-memory serve --http` processes on one database; yields their MCP URLs once ready."""
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(http_server(database_url, jwt_secret=SECRET, **settings))
            for _ in range(count)
        ]
        yield [server.mcp_url for server in servers]


@asynccontextmanager
async def clients_of(urls: list[str], tenant: str, agent: str) -> AsyncIterator[list[Client]]:
    """One MCP client per replica, all acting as ``agent`` of ``tenant``."""
    headers = {"Authorization": f"Bearer {mint(SECRET, tenant=tenant, agent=agent, roles=['writer'])}"}
    async with AsyncExitStack() as stack:
        clients = []
        for url in urls:
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, trust_env=False))
            clients.append(await stack.enter_async_context(Client(streamable_http_client(url, http_client=http))))
        yield clients


async def test_alternating_requests_between_two_replicas(database_url: str) -> None:
    """Writes on one replica are recalled on the other, and a continue turn on a replica that cached the
    session sees what the other replica wrote since (its hot set is invalidated through the database)."""
    async with replicas(database_url) as urls, clients_of(urls, "acme", "agent-a") as clients:
        for i in range(6):
            writer = clients[i % 2]
            result = await writer.call_tool("remember", {"text": f"step {i} of the migration", "session_id": "s"})
            assert not result.is_error
            reader = clients[(i + 1) % 2]
            with anyio.fail_after(10):
                while True:
                    bundle = await reader.call_tool("recall", {"intent": "continue", "session_id": "s"})
                    assert bundle.structured_content is not None
                    sections = bundle.structured_content["sections"]
                    texts = [item["text"] for section in sections for item in section["items"]]
                    if any(f"step {i} of" in t for t in texts):
                        break
                    await anyio.sleep(0.05)


RATE_LIMIT_BURST = 4
RATE_LIMIT_RATE = 0.01  # a call back every 100 s: none comes back during the test
RETRY_AFTER = re.compile(r"\(retry_after=(?P<seconds>\d+\.\d+)\)$")


@needs_redis
async def test_two_replicas_draw_one_agents_calls_from_one_redis_bucket(database_url: str) -> None:
    """With a budget of 4 calls per agent shared through Redis, one agent's calls alternating between two
    replicas are refused from the 5th on, on either replica (each alone has served only 2 or 3), with a
    `rate_limited` error naming retry_after and writing nothing; the same agent id in another tenant still gets
    through on both."""
    assert REDIS_URL is not None
    run = secrets.token_hex(4)  # Redis outlives the test: buckets of this run only
    tenant, other_tenant = f"acme-{run}", f"globex-{run}"
    limits = {
        "redis_url": REDIS_URL,
        "rate_limit_agent": str(RATE_LIMIT_RATE),
        "rate_limit_agent_burst": str(RATE_LIMIT_BURST),
    }
    async with replicas(database_url, **limits) as urls, clients_of(urls, tenant, "agent-a") as clients:
        for i in range(RATE_LIMIT_BURST):
            result = await clients[i % 2].call_tool("remember", {"text": f"call {i} within the budget"})
            assert not result.is_error, result.content
        for i in range(RATE_LIMIT_BURST, RATE_LIMIT_BURST + 2):
            refused = await clients[i % 2].call_tool("remember", {"text": f"call {i} over the budget"})
            assert refused.is_error, f"call {i} (replica {i % 2}) was served past the shared budget"
            text = refused.content[0].text  # type: ignore[union-attr]
            assert "rate_limited: too many calls for this agent (0.01/s, bursts of 4)" in text
            retry = RETRY_AFTER.search(text)
            assert retry is not None, f"no retry_after in {text!r}"
            assert 0 < float(retry["seconds"]) <= 1 / RATE_LIMIT_RATE

        async with clients_of(urls, other_tenant, "agent-a") as others:
            for i, other in enumerate(others):
                assert not (await other.call_tool("remember", {"text": f"another tenant, replica {i}"})).is_error

    redis = Redis.from_url(REDIS_URL)
    try:
        assert await redis.exists(f"agent-memory:rate:a:{tenant}:agent-a"), "the bucket is not in Redis"
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", tenant)
    finally:
        await conn.close()
    assert stored == RATE_LIMIT_BURST, "a refused call wrote an event"
