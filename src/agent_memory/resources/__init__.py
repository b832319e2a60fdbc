"""MCP resources: the human-curated views, and read-only records by id.

| URI | what |
|---|---|
| ``memory://identity``, ``memory://rules``, ``memory://preferences``, ``memory://glossary`` | views (Markdown) |
| ``memory://decisions/{id}`` | a decision of the ledger, with its chain links (JSON) |
| ``memory://events/{id}`` | an event as stored, secrets already redacted (JSON) |
| ``memory://handoffs/{id}`` | a handoff packet (JSON) |
| ``memory://artifacts/{id}`` | a whole tool output kept as an artifact (text) |

Reads run under the same guard as tool calls (role, rate limit, audit) and honour the caller's channels as
``recall`` does (``context/policy.py``):

- a view is readable when one of the caller's channels loads it (``memory://preferences``: private only);
  otherwise the read is refused as forbidden;
- an event or decision is readable when it was recorded in a channel the caller may use and one of those
  channels loads its sensitivity (a ``secret`` one, kept redacted, counts as ``high``); an artifact as its
  event; a handoff packet when the caller may use a channel that shows packets (all but public).

A missing id, an id of another tenant and a record the caller's channels may not show are all "not found"
(JSON-RPC error -32002), with the same message: nothing tells them apart.

| failure | JSON-RPC error |
|---|---|
| ``not_found`` | -32002 |
| ``forbidden`` (role, channel), ``rate_limited`` (``data.retry_after`` in seconds) | -32600 |
| ``internal`` | -32603 |
| any other (``invalid_input``, ``unavailable``, ...) | -32602 |

Messages read ``code: what was wrong``; ``data`` is the error as one JSON object (``error``, ``message``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from agent_memory.caller import Caller
from agent_memory.context.policy import VIEWS_LOADED, may_load
from agent_memory.errors import AgentMemoryError, Forbidden, InvalidInput, NotFound
from agent_memory.ids import PREFIXES, kind_of
from agent_memory.runtime import Runtime
from agent_memory.store.database import Tx
from agent_memory.store.rows import ArtifactRow, DecisionRow, EventRow, HandoffRow
from agent_memory.vocabulary import CHANNELS, VIEW_NAMES

RESOURCE_NOT_FOUND = -32002
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
JSONRPC_CODES = {
    "not_found": RESOURCE_NOT_FOUND,
    "forbidden": INVALID_REQUEST,
    "rate_limited": INVALID_REQUEST,
    "internal": INTERNAL_ERROR,
}
HANDOFF_CHANNELS = frozenset({"private", "team", "agent"})  # as context/sections.add_handoff: public shows none

VIEW_DESCRIPTIONS = {
    "identity": "Who the agent is: name, role, the people and project it serves.",
    "rules": "Rules the agent must follow in every answer.",
    "preferences": "The user's preferences (private; not loaded in team, agent or public channels).",
    "glossary": "Project terms and what they mean.",
}

T = TypeVar("T")


class Guard(Protocol):
    """The guard every tool call and resource read runs under (``tools._shared.run_guarded``, handed in by the
    server: ``resources`` may not import ``tools``)."""

    def __call__(
        self,
        runtime: Runtime,
        action: str,
        body: Callable[[Caller], Awaitable[T]],
        *,
        failure: Callable[[str, str, AgentMemoryError | None], Exception],
        audited: Callable[[Any], Iterable[str]],
    ) -> Awaitable[T]: ...


def may_read_view(caller: Caller, name: str) -> bool:
    """Whether one of the caller's channels loads the view ``name``."""
    return any(name in VIEWS_LOADED.get(channel, ()) for channel in caller.channels)


def may_read_record(caller: Caller, channel: str, sensitivity: str) -> bool:
    """Whether an event or decision recorded in ``channel`` with ``sensitivity`` may be shown to the caller."""
    level = "high" if sensitivity == "secret" else sensitivity  # stored redacted: as private as "high"
    return channel in caller.channels and any(
        may_load(usable, level) for usable in caller.channels if usable in CHANNELS
    )


def register_all(server: MCPServer, runtime: Runtime, guard: Guard) -> None:
    """Add every view resource and record template to ``server``; every read runs under ``guard``."""
    for name in VIEW_NAMES:
        _register_view(server, runtime, guard, name)
    _register_record(server, runtime, guard, "decision", "decisions", _decision)
    _register_record(server, runtime, guard, "event", "events", _event)
    _register_record(server, runtime, guard, "handoff", "handoffs", _handoff)

    @server.resource(
        "memory://artifacts/{artifact_id}",
        name="artifact",
        description="A whole tool output that was too long for its event (which keeps an excerpt).",
        mime_type="text/plain",
    )
    async def artifact(artifact_id: str) -> str:
        row = await _read(runtime, guard, "artifact", artifact_id, _artifact)
        return str(row.content)


def _register_view(server: MCPServer, runtime: Runtime, guard: Guard, name: str) -> None:
    uri = f"memory://{name}"

    async def read(caller: Caller) -> str:
        if not may_read_view(caller, name):
            shown_in = [channel for channel, views in VIEWS_LOADED.items() if name in views]
            usable = ", ".join(sorted(caller.channels)) or "none"
            where = f"the {', '.join(shown_in)} channel{'s' if len(shown_in) > 1 else ''}"
            raise Forbidden(f"{uri} is shown only in {where}; this caller may use {usable}")
        async with runtime.db.transaction(caller.tenant) as tx:
            row = await tx.get_view(name)
        return row.body if row is not None else ""

    @server.resource(uri, name=name, description=VIEW_DESCRIPTIONS[name], mime_type="text/markdown")
    async def view() -> str:
        return await guard(runtime, "read_resource", read, failure=protocol_error, audited=lambda _: [uri])


Fetch = Callable[[Tx, Caller, str], Awaitable[BaseModel | None]]


async def _event(tx: Tx, caller: Caller, ident: str) -> EventRow | None:
    row = await tx.get_event(ident)
    return row if row is not None and may_read_record(caller, row.channel, row.sensitivity) else None


async def _decision(tx: Tx, caller: Caller, ident: str) -> DecisionRow | None:
    row = await tx.get_decision(ident)
    return row if row is not None and may_read_record(caller, row.channel, row.sensitivity) else None


async def _handoff(tx: Tx, caller: Caller, ident: str) -> HandoffRow | None:
    row = await tx.get_handoff(ident)
    return row if row is not None and caller.channels & HANDOFF_CHANNELS else None


async def _artifact(tx: Tx, caller: Caller, ident: str) -> ArtifactRow | None:
    row = await tx.get_artifact(ident)
    return row if row is not None and await _event(tx, caller, row.event_id) is not None else None


def _register_record(server: MCPServer, runtime: Runtime, guard: Guard, kind: str, plural: str, fetch: Fetch) -> None:
    @server.resource(
        f"memory://{plural}/{{record_id}}",
        name=kind,
        description=f"One {kind} by id, as stored (JSON).",
        mime_type="application/json",
    )
    async def record(record_id: str) -> str:
        row = await _read(runtime, guard, kind, record_id, fetch)
        return json.dumps(row.model_dump(mode="json"), ensure_ascii=False, indent=2)


async def _read(runtime: Runtime, guard: Guard, kind: str, ident: str, fetch: Fetch) -> Any:
    """One record of the caller's tenant that its channels may show, or the JSON-RPC error a client can act on."""

    async def read(caller: Caller) -> BaseModel:
        if kind_of(ident) != kind:
            raise InvalidInput("id", f"{ident!r} is not a {kind} id", f"{PREFIXES[kind]}_ and 26 characters")
        async with runtime.db.transaction(caller.tenant) as tx:
            row = await fetch(tx, caller, ident)
        if row is None:
            raise NotFound(kind, ident)
        return row

    return await guard(runtime, "read_resource", read, failure=protocol_error, audited=lambda _: [ident])


def protocol_error(code: str, message: str, error: AgentMemoryError | None) -> MCPError:
    """The JSON-RPC error for a failed read (see the table in the module docstring)."""
    data = error.as_dict() if error is not None else {"error": code, "message": message}
    return MCPError(JSONRPC_CODES.get(code, INVALID_PARAMS), f"{code}: {message}", data)
