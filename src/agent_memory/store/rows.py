"""Rows as pydantic models (and the evidence candidate, a dataclass): the one place where database records
become typed values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict

from agent_memory.vocabulary import Channel, EventKind, Sensitivity, TaskStatus, ViewName


class Row(BaseModel):
    """Base of every row model: immutable, built from a record by field name."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class EventRow(Row):
    id: str
    session_id: str
    agent_id: str
    kind: EventKind
    channel: Channel
    actor: str | None
    sensitivity: Sensitivity
    text: str
    text_hash: str
    token_est: int
    tags: list[str]
    refs: list[str]
    importance: float
    pinned: bool
    metadata: dict[str, Any]
    structured: dict[str, Any] = {}
    redactions: list[str]
    duplicate_of: str | None
    artifact_id: str | None
    original_chars: int
    truncated: bool
    ts: datetime
    recorded_at: datetime | None = None


class ChunkRow(Row):
    id: str
    event_id: str
    seq: int
    session_id: str
    kind: EventKind
    channel: Channel
    sensitivity: Sensitivity
    text: str
    token_est: int
    importance: float
    pinned: bool
    tags: list[str]
    ts: datetime


class ToEmbed(NamedTuple):
    """A chunk without a vector: its text, and its context (the text of the chunk before it in its session) with
    that chunk's id (both ``None`` when there is none, or it is more sensitive)."""

    id: str
    text: str
    context: str | None
    context_id: str | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail, less its tenant and time (``Tx.audit_many``)."""

    principal: str
    action: str
    resource_ids: Sequence[str]
    success: bool
    latency_ms: float | None
    request_id: str | None
    detail: dict[str, Any] | None = None


@dataclass(slots=True)
class Candidate:
    """An evidence candidate: a chunk with what scoring and filtering need from its event and decision.

    Not a pydantic model: a recall builds hundreds of them from rows PostgreSQL has typed already, and a plain
    slotted dataclass is built about twenty times faster than even an unvalidated model. Not frozen either: a
    frozen one sets each field through ``object.__setattr__``, which made building it ten times slower (800
    candidates: 3.2 ms against 0.3). Nothing changes a candidate once built."""

    id: str
    event_id: str
    seq: int
    session_id: str
    kind: EventKind
    channel: Channel
    sensitivity: Sensitivity
    text: str
    token_est: int
    importance: float
    pinned: bool
    tags: list[str]
    ts: datetime
    rank: float
    event_refs: list[str]
    agent_id: str
    text_hash: str
    decision_id: str | None
    decision_status: str | None
    superseded_by: str | None
    superseded_at: datetime | None
    embedding_model: str | None = None  # the model of the chunk's vector; None: not embedded yet
    embedding_dim: int | None = None
    matched: list[str] = field(default_factory=list)  # the query's lexemes the chunk holds (BM25 over the pool)
    lexeme_count: int = 0  # the chunk's distinct lexemes (its length, for BM25)
    corpus_size: int = 0  # chunks of the tenant made by the horizon
    actor: str | None = None  # who said or did it (from the event)
    lexical_since: datetime | None = None  # the oldest time any full-text match came from (-infinity: all time)


class ArtifactRow(Row):
    id: str
    event_id: str
    mime_type: str
    content: str
    chars: int
    sha256: str
    created_at: datetime | None = None


class DecisionRow(Row):
    id: str
    event_id: str
    session_id: str
    agent_id: str
    channel: Channel
    sensitivity: Sensitivity
    text: str
    rationale: str | None
    constraints: list[str]
    alternatives: list[str]
    consequences: list[str]
    scope: str | None
    confidence: float | None
    refs: list[str]
    importance: float
    pinned: bool
    token_est: int
    status: str = "active"
    supersedes: str | None = None
    superseded_by: str | None = None
    ts: datetime
    superseded_at: datetime | None = None


class TaskRow(Row):
    id: str
    title: str
    status: TaskStatus
    owner: str | None
    session_id: str
    channel: Channel
    sensitivity: Sensitivity
    note: str | None
    token_est: int = 1
    last_event_id: str
    created_at: datetime
    updated_at: datetime


class HandoffRow(Row):
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
    token_est: int
    status: str = "pending"
    created_at: datetime
    delivered_at: datetime | None = None
    delivered_session: str | None = None


class ViewRow(Row):
    name: ViewName
    body: str
    token_est: int
    version: int
    updated_by: str
    updated_at: datetime


class ApiKeyRow(Row):
    tenant_id: str
    id: str
    name: str
    key_hash: str
    roles: list[str]
    agent_id: str | None
    require_signature: bool
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class AuditRow(Row):
    id: int
    tenant_id: str
    principal: str
    action: str
    resource_ids: list[str]
    success: bool
    latency_ms: float | None
    request_id: str | None
    detail: dict[str, Any]
    at: datetime


RowT = TypeVar("RowT", bound=Row)


def to_row(model: type[RowT], record: Any) -> RowT:
    """Build ``model`` from an asyncpg record (a mapping)."""
    return model.model_validate(dict(record))
