"""Two replicas on one database behind alternating requests: stateless HTTP, shared state, fresh hot sets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent_memory.replay.targets import free_port
from agent_memory.tokens import mint

pytestmark = pytest.mark.anyio
SECRET = "replica-test-secret-with-32-bytes-or-more"


@asynccontextmanager
async def replica(database_url: str) -> AsyncIterator[str]:
    """`agent-memory serve --http` on a free port; yields its MCP URL once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env.update(AGENT_MEMORY_DATABASE_URL=database_url, AGENT_MEMORY_JWT_SECRET=SECRET)
    command = [sys.executable, "-m", "agent_memory", "serve", "--http", "--port", str(port)]
    process = await anyio.open_process(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx2.AsyncClient() as http:
            with anyio.fail_after(30):
                while True:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            break
                    except httpx2.TransportError:
                        await anyio.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        await process.wait()
        await process.aclose()


async def test_alternating_requests_between_two_replicas(database_url: str) -> None:
    """Writes on one replica are recalled on the other, and a continue turn on a replica that cached the
    session sees what the other replica wrote since (its hot set is invalidated through the database)."""
    token = mint(SECRET, tenant="acme", agent="agent-a", roles=["writer"])
    headers = {"Authorization": f"Bearer {token}"}
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            url = await stack.enter_async_context(replica(database_url))
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers))
            clients.append(await stack.enter_async_context(Client(streamable_http_client(url, http_client=http))))
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
