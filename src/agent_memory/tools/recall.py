"""The ``recall`` tool: the active context bundle for one call, under a token budget."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from agent_memory.context.assembly import RecallRequest
from agent_memory.context.bundle import Bundle, render_markdown
from agent_memory.context.policy import DEFAULT_BUDGET, MIN_BUDGET
from agent_memory.context.recall import build
from agent_memory.runtime import Runtime
from agent_memory.tools._shared import guarded, result
from agent_memory.vocabulary import Channel

DESCRIPTION = """Get the context you need for your next step: identity and rules, a handoff addressed to you,
open tasks, decisions in force, evidence relevant to `query`, and the recent turns of `session_id` — curated to
fit `budget_tokens`, with what was left out and why. Use `intent="continue"` (or an empty query) to resume work
cheaply. `channel` is where your answer will be shown (private, team, agent, public): it decides what may be
loaded. `include_history` also shows superseded decisions; `as_of` rebuilds the context of a past moment."""


def register(server: MCPServer, runtime: Runtime) -> None:
    """Add ``recall`` to ``server``."""

    @server.tool(
        name="recall",
        title="Recall context",
        description=DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
    )
    @guarded(runtime, "recall")
    async def recall(
        query: Annotated[
            str, Field(max_length=8000, description="What you need context for; empty: resume work without a search.")
        ] = "",
        session_id: Annotated[
            str, Field(min_length=1, max_length=128, description="The work thread whose recent turns to load.")
        ] = "default",
        channel: Annotated[
            Channel, Field(description="Where the answer will be shown; decides what may load.")
        ] = "private",
        agent_id: Annotated[
            str | None,
            Field(min_length=1, max_length=128, description="stdio only; a handoff to this agent is delivered."),
        ] = None,
        budget_tokens: Annotated[
            int, Field(ge=MIN_BUDGET, le=DEFAULT_BUDGET, description="Most tokens the bundle may hold.")
        ] = DEFAULT_BUDGET,
        intent: Annotated[
            Literal["continue", "answer", "plan", "review"] | None,
            Field(description="`continue` resumes work from the hot set without a search."),
        ] = None,
        include_history: Annotated[
            bool, Field(description="Also load superseded decisions, marked [superseded by dec_…].")
        ] = False,
        as_of: Annotated[
            datetime | None,
            Field(
                description="Rebuild the context as it was then (ISO 8601): decisions in force and events before then."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, Bundle]:
        request = RecallRequest(
            query=query,
            session_id=session_id,
            channel=channel,
            budget_tokens=budget_tokens,
            intent=intent,
            include_history=include_history,
            as_of=as_of,
        )
        bundle = await build(
            runtime.db,
            runtime.hot,
            runtime.caller(agent_id),
            request,
            chunk_tokens=runtime.settings.chunk_tokens,
            semantic=runtime.semantic,
        )
        for section in bundle.sections:
            runtime.metrics.bundle_tokens.labels(section=section.name).observe(section.token_est)
        runtime.metrics.candidate_pool.observe(bundle.provenance.candidate_pool)
        runtime.metrics.recall_paths.labels(path=bundle.provenance.path).inc()
        return result(bundle, render_markdown(bundle))
