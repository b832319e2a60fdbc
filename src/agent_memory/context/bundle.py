"""The active context bundle as callers get it: structured, and as Markdown for a model to read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

PathTaken = Literal["fast", "retrieval", "cold"]
OmissionReason = Literal["budget", "privacy", "duplicate", "superseded", "unreferenced summary", "conflict"]


class Item(BaseModel):
    """One piece of context, with the ids it comes from."""

    text: str
    refs: list[str] = Field(description="Source ids: the event, decision, task, packet or view it comes from.")
    kind: str
    ts: datetime | None
    score: float
    token_est: int


class Section(BaseModel):
    """A named part of the bundle, never over its cap."""

    name: str
    items: list[Item]
    token_est: int
    cap: int


class Omission(BaseModel):
    """Things left out, grouped by section and reason."""

    section: str
    reason: OmissionReason
    ids: list[str]


class ConflictNote(BaseModel):
    """A summary or fact contradicted by newer events: the events win."""

    item: str = Field(description="The id of the contradicted summary or fact event.")
    newer: list[str] = Field(description="The newer events that contradict it.")
    says: str
    newer_says: str


class Provenance(BaseModel):
    """How the bundle was made."""

    path: PathTaken
    query_terms: list[str]
    candidate_pool: int
    items_considered: int
    timings_ms: dict[str, float]
    policy_version: str
    channel: str
    as_of: datetime | None
    reference_time: datetime | None = Field(description="What recency was measured from.")
    rebuilt_chunks: int = Field(default=0, description="Chunks rebuilt because derived data had been dropped.")
    semantic: Literal["pgvector", "rerank", "off"] = Field(
        default="off",
        description="Semantic retrieval: `pgvector` (vector search joined the pool), `rerank` (no pgvector: "
        "similarity reranked the lexical and recent pool), `off` (lexical only).",
    )
    candidates_without_vector: int = Field(
        default=0, description="Candidates scored lexically only: not embedded yet (or by another model)."
    )
    time_window: tuple[datetime, datetime] | None = Field(
        default=None, description="The time window a temporal cue of the query named (preferred, not required)."
    )


class Bundle(BaseModel):
    """Result of ``recall``."""

    sections: list[Section]
    budget_tokens: int
    token_used_est: int
    omissions: list[Omission]
    conflicts: list[ConflictNote]
    provenance: Provenance


def render_markdown(bundle: Bundle) -> str:
    """The bundle as Markdown: each non-empty section with its items and their sources."""
    lines = [f"# Active context ({bundle.token_used_est} of {bundle.budget_tokens} tokens)"]
    for section in bundle.sections:
        if not section.items:
            continue
        lines.append(f"\n## {section.name.replace('_', ' ')}")
        for item in section.items:
            when = f" {item.ts:%Y-%m-%d %H:%M}" if item.ts else ""
            lines.append(f"- {item.text}  \n  _[{item.kind}{when}; {', '.join(item.refs)}]_")
    if bundle.conflicts:
        lines.append("\n## conflicts (newer events win)")
        lines.extend(
            f"- {c.item} says {c.says!r}; newer {', '.join(c.newer)} say {c.newer_says!r}" for c in bundle.conflicts
        )
    if bundle.omissions:
        lines.append("\n## left out")
        lines.extend(f"- {o.section}: {len(o.ids)} ({o.reason})" for o in bundle.omissions)
    return "\n".join(lines)
