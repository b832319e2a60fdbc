"""The ``handoff_packet`` tool: hand work to another agent with a packet, not a transcript."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from agent_memory.handoffs import create_handoff
from agent_memory.models import HandoffOut
from agent_memory.runtime import Runtime
from agent_memory.tools._shared import guarded, result

DESCRIPTION = """Hand work over to another agent. The packet states the task, its constraints, the decisions
that bind it (active decision ids), the files the receiver needs, the open questions and the events it rests
on. The receiving agent's next recall is built from this packet, those decisions and a few related pieces of
evidence, not from your transcript, so put everything it must know here."""


def register(server: MCPServer, runtime: Runtime) -> None:
    """Add ``handoff_packet`` to ``server``."""

    @server.tool(
        name="handoff_packet",
        title="Hand work to another agent",
        description=DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    )
    @guarded(runtime, "handoff_packet")
    async def handoff_packet(
        to_agent: Annotated[str, Field(min_length=1, max_length=128, description="The receiving agent's id.")],
        task: Annotated[str, Field(min_length=1, max_length=8000, description="The work being handed over.")],
        constraints: Annotated[
            list[str] | None, Field(max_length=50, description="Limits the work must respect.")
        ] = None,
        decision_ids: Annotated[
            list[str] | None, Field(max_length=50, description="Active decisions (dec_…) that bind the work.")
        ] = None,
        required_files: Annotated[
            list[str] | None, Field(max_length=100, description="Files the receiver needs (paths or URLs).")
        ] = None,
        open_questions: Annotated[
            list[str] | None, Field(max_length=50, description="What is still undecided.")
        ] = None,
        refs: Annotated[list[str] | None, Field(max_length=100, description="Events/decisions it rests on.")] = None,
        session_id: Annotated[
            str | None, Field(min_length=1, max_length=128, description="Work thread; default 'default'.")
        ] = None,
        agent_id: Annotated[str | None, Field(min_length=1, max_length=128, description="stdio only.")] = None,
    ) -> Annotated[CallToolResult, HandoffOut]:
        packet = await create_handoff(
            runtime.db,
            runtime.caller(agent_id),
            to_agent=to_agent,
            task=task,
            session_id=session_id or "default",
            constraints=constraints or [],
            decision_ids=decision_ids or [],
            required_files=required_files or [],
            open_questions=open_questions or [],
            refs=refs or [],
            hot=runtime.hot,
        )
        text = f"handoff {packet.id} for {packet.to_agent} is pending: {packet.task}"
        return result(packet, text)
