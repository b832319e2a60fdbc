"""MCP resources: the human-curated views, and read-only records by id.

| URI | what |
|---|---|
| ``memory://identity``, ``memory://rules``, ``memory://preferences``, ``memory://glossary`` | views (Markdown) |
| ``memory://decisions/{id}`` | a decision of the ledger, with its chain links (JSON) |
| ``memory://events/{id}`` | an event as stored, secrets already redacted (JSON) |
| ``memory://handoffs/{id}`` | a handoff packet (JSON) |
| ``memory://artifacts/{id}`` | a whole tool output kept as an artifact (text) |

A missing id, or an id of another tenant, is "not found" (JSON-RPC error -32002) either way.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from agent_memory import audit
from agent_memory.access import require
from agent_memory.caller import Caller
from agent_memory.errors import AgentMemoryError
from agent_memory.ids import kind_of
from agent_memory.runtime import Runtime
from agent_memory.store.database import Tx
from agent_memory.vocabulary import VIEW_NAMES

RESOURCE_NOT_FOUND = -32002
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602

VIEW_DESCRIPTIONS = {
    "identity": "Who the agent is: name, role, the people and project it serves.",
    "rules": "Rules the agent must follow in every answer.",
    "preferences": "The user's preferences (private; not loaded in team, agent or public channels).",
    "glossary": "Project terms and what they mean.",
}


def register_all(server: MCPServer, runtime: Runtime) -> None:
    """Add every view resource and record template to ``server``."""
    for name in VIEW_NAMES:
        _register_view(server, runtime, name)
    _register_record(server, runtime, "decision", "decisions", lambda tx, i: tx.get_decision(i))
    _register_record(server, runtime, "event", "events", lambda tx, i: tx.get_event(i))
    _register_record(server, runtime, "handoff", "handoffs", lambda tx, i: tx.get_handoff(i))

    @server.resource(
        "memory://artifacts/{artifact_id}",
        name="artifact",
        description="A whole tool output that was too long for its event (which keeps an excerpt).",
        mime_type="text/plain",
    )
    async def artifact(artifact_id: str) -> str:
        row = await _read(runtime, "artifact", artifact_id, lambda tx, i: tx.get_artifact(i))
        return str(row.content)


def _register_view(server: MCPServer, runtime: Runtime, name: str) -> None:
    @server.resource(f"memory://{name}", name=name, description=VIEW_DESCRIPTIONS[name], mime_type="text/markdown")
    async def view() -> str:
        row = await _guarded(runtime, f"memory://{name}", lambda tx: tx.get_view(name))
        return str(row.body) if row is not None else ""


def _register_record(
    server: MCPServer,
    runtime: Runtime,
    kind: str,
    plural: str,
    fetch: Callable[[Tx, str], Awaitable[BaseModel | None]],
) -> None:
    @server.resource(
        f"memory://{plural}/{{record_id}}",
        name=kind,
        description=f"One {kind} by id, as stored (JSON).",
        mime_type="application/json",
    )
    async def record(record_id: str) -> str:
        row = await _read(runtime, kind, record_id, fetch)
        return json.dumps(row.model_dump(mode="json"), ensure_ascii=False, indent=2)


async def _read(runtime: Runtime, kind: str, ident: str, fetch: Callable[[Tx, str], Awaitable[Any]]) -> Any:
    """Fetch one record of the caller's tenant or raise the JSON-RPC error a client can act on."""
    if kind_of(ident) != kind:
        raise MCPError(INVALID_PARAMS, f"{ident!r} is not a {kind} id", {"id": ident})
    row = await _guarded(runtime, ident, lambda tx: fetch(tx, ident))
    if row is None:
        raise MCPError(RESOURCE_NOT_FOUND, f"no {kind} with id {ident!r} exists in this tenant", {"id": ident})
    return row


async def _guarded(runtime: Runtime, resource: str, fetch: Callable[[Tx], Awaitable[Any]]) -> Any:
    """Check the caller may read, run ``fetch`` in the caller's tenant, and audit the read."""
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    try:
        caller = runtime.caller()
        require(caller, "read_resource")
    except AgentMemoryError as exc:
        raise MCPError(INVALID_REQUEST, f"{exc.code}: {exc.message}") from exc
    try:
        async with runtime.db.transaction(caller.tenant) as tx:
            row = await fetch(tx)
    except AgentMemoryError as exc:
        await _audit(runtime, caller, resource, started, request_id, success=False)
        raise MCPError(INVALID_PARAMS, exc.message) from exc
    await _audit(runtime, caller, resource, started, request_id, success=row is not None)
    return row


async def _audit(
    runtime: Runtime, caller: Caller, resource: str, started: float, request_id: str, *, success: bool
) -> None:
    await audit.finish(
        runtime.db,
        runtime.metrics,
        caller,
        "read_resource",
        started=started,
        request_id=request_id,
        resource_ids=[resource],
        error=None if success else "not_found",
    )
