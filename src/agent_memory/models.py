"""What callers send and get back: the pydantic models behind the MCP tools' input and output schemas.

Field descriptions are read by the model that calls the tools, so they say what to put there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent_memory.vocabulary import Channel, EventKind, Sensitivity, TaskStatus

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")]
Ref = Annotated[str, Field(min_length=1, max_length=64)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
ShortText = Annotated[str, Field(min_length=1, max_length=2000)]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        msg = "must include a timezone offset, e.g. 2026-11-28T09:30:00Z"
        raise ValueError(msg)
    return value


class Strict(BaseModel):
    """Inputs reject unknown fields, so a misspelt argument is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DecisionFields(Strict):
    """Structured fields of a decision (with kind="decision")."""

    rationale: str | None = Field(default=None, max_length=8000, description="Why this was decided.")
    constraints: list[ShortText] = Field(default_factory=list, max_length=50, description="Limits it must respect.")
    alternatives: list[ShortText] = Field(default_factory=list, max_length=50, description="Options rejected.")
    consequences: list[ShortText] = Field(default_factory=list, max_length=50, description="What follows from it.")
    scope: str | None = Field(default=None, max_length=200, description="Where it applies, e.g. a repo or team.")
    confidence: float | None = Field(default=None, ge=0, le=1, description="0 to 1.")


class TaskFields(Strict):
    """Structured fields of a task update (with kind="task_update")."""

    task_id: Identifier | None = Field(
        default=None, description="The task to update; omit to create a new task (its id is returned)."
    )
    title: str | None = Field(default=None, min_length=1, max_length=300, description="Required for a new task.")
    status: TaskStatus | None = Field(default=None, description="open, doing, blocked or done.")
    owner: str | None = Field(default=None, max_length=128, description="Agent or person responsible.")
    note: str | None = Field(default=None, max_length=4000, description="Short progress note.")


class EventFields(Strict):
    """Fields an event may carry besides its text; in a batch each may override the call-level defaults."""

    kind: EventKind | None = Field(default=None, description="What happened; default message.")
    session_id: Identifier | None = Field(default=None, description="Work thread; default 'default'.")
    channel: Channel | None = Field(default=None, description="Where it was said; default private.")
    actor: str | None = Field(default=None, max_length=128, description="Who said or did it: user, assistant, a tool.")
    sensitivity: Sensitivity | None = Field(
        default=None, description="none, low, high or secret; classified automatically when omitted."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    refs: list[Ref] = Field(
        default_factory=list, max_length=100, description="Ids of events or decisions this one rests on."
    )
    at: datetime | None = Field(
        default=None, description="When it happened (ISO 8601 with offset); default now. For replaying history."
    )
    importance: float | None = Field(default=None, ge=0, le=1, description="0 to 1; default 0.5 (0.8 decisions).")
    pinned: bool = Field(default=False, description="Always load it into context.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON kept with the event.")
    decision: DecisionFields | None = Field(default=None, description="Only with kind=decision.")
    task: TaskFields | None = Field(default=None, description="Only with kind=task_update.")

    @field_validator("at")
    @classmethod
    def _at_has_offset(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class EventIn(EventFields):
    """One event to remember."""

    text: str = Field(description="The content: a message, tool output, decision statement, note ...")


class EventReceipt(BaseModel):
    """What became of one remembered event."""

    id: str
    kind: EventKind
    session_id: str
    sensitivity: Sensitivity
    token_est: int
    chunk_ids: list[str]
    duplicate_of: str | None = Field(description="The first event with the same text, when this repeats it.")
    redactions: list[str] = Field(description="Kinds of secrets removed before storage (never their values).")
    truncated: bool = Field(description="The event keeps an excerpt; the whole text is in the artifact.")
    original_chars: int
    artifact_id: str | None
    decision_id: str | None = None
    task_id: str | None = None


class RememberResult(BaseModel):
    """Result of ``remember``."""

    count: int
    events: list[EventReceipt]


class DecisionOut(BaseModel):
    """A decision of the ledger."""

    id: str
    text: str
    status: str
    rationale: str | None
    constraints: list[str]
    alternatives: list[str]
    consequences: list[str]
    scope: str | None
    confidence: float | None
    refs: list[str]
    event_id: str
    supersedes: str | None
    superseded_by: str | None
    ts: datetime


class SupersedeResult(BaseModel):
    """Result of ``supersede_decision``: the new head of the chain and the one it replaced."""

    decision: DecisionOut
    superseded: DecisionOut
    event_id: str
    redactions: list[str]


class HandoffOut(BaseModel):
    """A handoff packet."""

    id: str
    from_agent: str
    to_agent: str
    session_id: str
    task: str
    constraints: list[str]
    decision_ids: list[str]
    required_files: list[str]
    open_questions: list[str]
    refs: list[str]
    status: str
    created_at: datetime
    redactions: list[str] = Field(default_factory=list)
