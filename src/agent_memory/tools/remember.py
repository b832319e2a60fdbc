"""The ``remember`` tool: record one event, or a batch of up to 500 in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from agent_memory.errors import InvalidInput
from agent_memory.ingest import remember as remember_events
from agent_memory.models import DecisionFields, EventIn, RememberResult, TaskFields
from agent_memory.runtime import Runtime
from agent_memory.tools._shared import guarded, result
from agent_memory.vocabulary import Channel, EventKind, Sensitivity

DESCRIPTION = """Record what you saw or did so it can be recalled later: a message, a tool call or its result,
a decision, a task update, a fact, a preference or a summary.

Give `text` (and optionally `kind`, `session_id`, `channel`, `refs` ...) for one event, or `events` (a list of
objects with the same fields) to record up to 500 at once; the call-level fields are then defaults for each.
Secrets in the text are removed before anything is stored; the reply lists the kinds removed. Repeating a
text already stored is recorded but linked to the first occurrence (`duplicate_of`). Long tool output is kept
whole as an artifact and an excerpt. `kind="decision"` adds an active decision to the ledger (its `refs` should
cite the events it rests on); `kind="task_update"` creates or updates a task (`task.task_id` to update).
Returns the ids of what was stored."""


def register(server: MCPServer, runtime: Runtime) -> None:
    """Add ``remember`` to ``server``."""

    @server.tool(
        name="remember",
        title="Remember events",
        description=DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    )
    @guarded(runtime, "remember")
    async def remember(
        text: Annotated[str | None, Field(description="The event's content (omit when giving `events`).")] = None,
        kind: Annotated[EventKind | None, Field(description="What happened; default message.")] = None,
        session_id: Annotated[
            str | None, Field(min_length=1, max_length=128, description="Work thread; default 'default'.")
        ] = None,
        channel: Annotated[
            Channel | None, Field(description="Where it was said; default private. Decides where it may be recalled.")
        ] = None,
        actor: Annotated[str | None, Field(max_length=128, description="Who said or did it.")] = None,
        sensitivity: Annotated[
            Sensitivity | None,
            Field(
                description="When omitted: secret if a secret was redacted; high in the private channel, for "
                "preferences and for personal data (e-mail, phone, IBAN); none in public; else low. Declaring "
                "secret stores only a marker."
            ),
        ] = None,
        tags: Annotated[list[str] | None, Field(max_length=32, description="Labels to find it by.")] = None,
        refs: Annotated[
            list[str] | None,
            Field(max_length=100, description="Ids of events or decisions of your tenant it rests on."),
        ] = None,
        at: Annotated[
            datetime | None,
            Field(description="When it happened, ISO 8601 with an offset (1970 to one day ahead); default now."),
        ] = None,
        importance: Annotated[
            float | None, Field(ge=0, le=1, description="0 to 1; default 0.5, decisions 0.8.")
        ] = None,
        pinned: Annotated[bool | None, Field(description="Always load into context.")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Free-form JSON up to 64 KiB; secret-looking values are redacted.")
        ] = None,
        decision: Annotated[
            DecisionFields | None, Field(description="With kind=decision: its structured fields.")
        ] = None,
        task: Annotated[
            TaskFields | None, Field(description="With kind=task_update: the task to create (no task_id) or update.")
        ] = None,
        events: Annotated[
            list[dict[str, Any]] | None, Field(description="A batch: objects with the fields above, `text` required.")
        ] = None,
        agent_id: Annotated[
            str | None,
            Field(
                min_length=1, max_length=128, description="Your agent id (stdio only; over HTTP the token names it)."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, RememberResult]:
        given = {
            "text": text,
            "kind": kind,
            "session_id": session_id,
            "channel": channel,
            "actor": actor,
            "sensitivity": sensitivity,
            "tags": tags,
            "refs": refs,
            "at": at,
            "importance": importance,
            "pinned": pinned,
            "metadata": metadata,
            "decision": decision,
            "task": task,
        }
        fields = {key: value for key, value in given.items() if value is not None}
        if events is None:
            if text is None:
                raise InvalidInput("text", "missing", "`text` for one event, or `events` for a batch")
            items = [_event(fields, "")]
        else:
            if text is not None:
                raise InvalidInput("text", "given together with `events`", "one or the other")
            items = [_event({**fields, **item}, f"events[{i}].") for i, item in enumerate(events)]
        outcome = await remember_events(runtime.db, runtime.caller(agent_id), items, runtime.limits, runtime.hot)
        lines = [f"remembered {outcome.count} event(s)"]
        for receipt in outcome.events:
            notes = []
            if receipt.duplicate_of:
                notes.append(f"duplicate of {receipt.duplicate_of}")
            if receipt.redactions:
                notes.append(f"redacted: {', '.join(receipt.redactions)}")
            if receipt.truncated:
                notes.append(f"excerpt kept; full output in memory://artifacts/{receipt.artifact_id}")
            for label, ident in (("decision", receipt.decision_id), ("task", receipt.task_id)):
                if ident:
                    notes.append(f"{label} {ident}")
            lines.append(f"- {receipt.id} ({receipt.kind}, {receipt.sensitivity})" + "".join(f"; {n}" for n in notes))
        return result(outcome, "\n".join(lines))


def _event(fields: dict[str, Any], where: str) -> EventIn:
    """Validate one event's fields, naming the field that is wrong (``events[3].kind: ...``)."""
    try:
        return EventIn.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "event"
        value = first.get("input")
        shown = repr(value)[:80] if not isinstance(value, dict) else "an object"
        raise InvalidInput(f"{where}{location}", f"{first['msg'].lower()} (got {shown})") from exc
