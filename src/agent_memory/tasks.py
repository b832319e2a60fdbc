"""Tasks as the context shows them: one line each, whose token estimate is stored with the task."""

from __future__ import annotations

from agent_memory.store.rows import TaskRow
from agent_memory.text import estimate_tokens


def task_line(title: str, status: str, owner: str | None, note: str | None) -> str:
    """``[doing] Write the migration tests (owner: bob) — half done``."""
    line = f"[{status}] {title}"
    if owner:
        line += f" (owner: {owner})"
    if note:
        line += f" — {note}"
    return line


def with_estimate(task: TaskRow) -> TaskRow:
    """``task`` with ``token_est`` set for its current line."""
    tokens = estimate_tokens(task_line(task.title, task.status, task.owner, task.note))
    return task.model_copy(update={"token_est": tokens})
