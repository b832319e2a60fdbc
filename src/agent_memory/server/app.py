"""Wiring: the MCP server with every tool and resource, bound to one ``Runtime``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from agent_memory import __version__, resources, tools
from agent_memory.runtime import Runtime
from agent_memory.store.database import CHANGES_CHANNEL, VIEWS_CHANNEL

INSTRUCTIONS = """Durable memory for agents. Call `remember` for what you see and do (messages, tool calls and
results, decisions, task updates), `supersede_decision` when a decision changes, and `handoff_packet` to pass
work to another agent. Read `memory://identity` and `memory://rules` for who you are and what you must follow."""


def build_server(runtime: Runtime, *, tenant_filter: str | None = None, **options: Any) -> MCPServer:
    """The MCP server for ``runtime``. View changes made by any process (``agent-memory views set``) reach
    clients listening on ``memory://NAME``; ``tenant_filter`` limits them to one tenant (stdio)."""
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            ready = anyio.Event()
            group.start_soon(_relay_changes, runtime, bus, tenant_filter, ready)
            await ready.wait()
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    server: MCPServer = MCPServer(
        name="agent-memory",
        title="agent-memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        subscriptions=bus,
        **options,
    )
    tools.register_all(server, runtime)
    resources.register_all(server, runtime)
    return server


async def _relay_changes(
    runtime: Runtime, bus: InMemorySubscriptionBus, tenant_filter: str | None, ready: anyio.Event
) -> None:
    """LISTEN for changes made by any process: drop what they touched from the hot set, and publish
    ``memory://NAME`` updates to this process's listeners when a view changed."""
    async with runtime.db.listen(VIEWS_CHANNEL, CHANGES_CHANNEL) as notifications:
        ready.set()
        async for channel, payload in notifications:
            if channel == CHANGES_CHANNEL:
                runtime.hot.invalidate_payload(payload)
                continue
            tenant, _, name = payload.partition("/")
            runtime.hot.invalidate(tenant, "*")
            if tenant_filter is None or tenant == tenant_filter:
                await bus.publish(ResourceUpdated(uri=f"memory://{name}"))
