"""The ``forget`` tool (admin): delete events by id, a session, a subject or the whole tenant, everywhere."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from agent_memory.forget import ForgetReceipt, forget, scope_of
from agent_memory.runtime import Runtime
from agent_memory.tools._shared import guarded, result

DESCRIPTION = """Permanently delete memory of this tenant, when a person asks to be forgotten or data must go.
Give exactly one of: `event_ids` (those events), `session_id` (a whole session), `subject` (every event that
mentions this text, case-insensitively, plus handoff packets mentioning it; it is blanked out of the views), or
`everything=true` (the whole tenant). Duplicates, chunks, artifacts, the decisions they recorded and the task
state they produced go with them. Needs the admin role. Returns what was deleted, table by table; cannot be
undone."""


def register(server: MCPServer, runtime: Runtime) -> None:
    """Add ``forget`` to ``server``."""

    @server.tool(
        name="forget",
        title="Forget",
        description=DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True),
    )
    @guarded(runtime, "forget")
    async def forget_tool(
        event_ids: Annotated[list[str] | None, Field(max_length=1000, description="Events to forget (evt_…).")] = None,
        session_id: Annotated[str | None, Field(min_length=1, max_length=128, description="A whole session.")] = None,
        subject: Annotated[str | None, Field(min_length=3, max_length=500, description="Text to forget.")] = None,
        everything: Annotated[bool, Field(description="Forget the whole tenant.")] = False,
    ) -> Annotated[CallToolResult, ForgetReceipt]:
        scope, value = scope_of(event_ids=event_ids, session_id=session_id, subject=subject, everything=everything)
        receipt = await forget(runtime.db, runtime.caller(), scope, value, hot=runtime.hot)
        counts = ", ".join(f"{name} {count}" for name, count in receipt.model_dump().items() if name != "scope")
        return result(receipt, f"forgotten ({scope}): {counts}")
