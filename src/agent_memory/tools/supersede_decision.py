"""The ``supersede_decision`` tool: replace an active decision, keeping the chain and its refs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from agent_memory.decisions import supersede
from agent_memory.models import DecisionFields, SupersedeResult
from agent_memory.runtime import Runtime
from agent_memory.tools._shared import guarded, result
from agent_memory.vocabulary import Channel

DESCRIPTION = """Replace an active decision with a new one. The old decision is kept, marked superseded and
linked to its successor; the new one cites the old one and any `refs` you give (the events that justify the
change). Use this instead of recording a contradicting decision. Fails, naming the current head of the chain,
when `decision_id` was already superseded."""


def register(server: MCPServer, runtime: Runtime) -> None:
    """Add ``supersede_decision`` to ``server``."""

    @server.tool(
        name="supersede_decision",
        title="Supersede a decision",
        description=DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    )
    @guarded(runtime, "supersede_decision")
    async def supersede_decision(
        decision_id: Annotated[str, Field(description="The active decision to replace (dec_…).")],
        text: Annotated[str, Field(min_length=1, max_length=20000, description="The new decision.")],
        rationale: Annotated[str | None, Field(max_length=8000, description="Why it changed.")] = None,
        constraints: Annotated[list[str] | None, Field(max_length=50, description="Limits it must respect.")] = None,
        alternatives: Annotated[list[str] | None, Field(max_length=50, description="Options rejected.")] = None,
        consequences: Annotated[list[str] | None, Field(max_length=50, description="What follows from it.")] = None,
        scope: Annotated[str | None, Field(max_length=200, description="Default: the old decision's scope.")] = None,
        confidence: Annotated[float | None, Field(ge=0, le=1, description="0 to 1.")] = None,
        refs: Annotated[list[str] | None, Field(max_length=100, description="Events that justify it.")] = None,
        session_id: Annotated[
            str | None, Field(min_length=1, max_length=128, description="Work thread; default: the old decision's.")
        ] = None,
        channel: Annotated[Channel | None, Field(description="Default: the old decision's channel.")] = None,
        at: Annotated[datetime | None, Field(description="When it was decided (ISO 8601); default now.")] = None,
        agent_id: Annotated[str | None, Field(min_length=1, max_length=128, description="stdio only.")] = None,
    ) -> Annotated[CallToolResult, SupersedeResult]:
        fields = DecisionFields(
            rationale=rationale,
            constraints=constraints or [],
            alternatives=alternatives or [],
            consequences=consequences or [],
            scope=scope,
            confidence=confidence,
        )
        outcome = await supersede(
            runtime.db,
            runtime.caller(agent_id),
            decision_id,
            text,
            fields,
            refs=refs or [],
            session_id=session_id,
            channel=channel,
            at=at,
            limits=runtime.limits,
            hot=runtime.hot,
        )
        text_out = (
            f"{outcome.decision.id} is now active and supersedes {outcome.superseded.id}\n"
            f"new: {outcome.decision.text}\nrefs: {', '.join(outcome.decision.refs)}"
        )
        return result(outcome, text_out)
