"""Tasks: state projected from ``task_update`` events, and the one line the context shows for each.

``apply_update`` is the projection — used by the write path for the task table and by ``recall(as_of=…)``
to replay the task state of a past moment from the events themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent_memory.models import TaskFields
from agent_memory.store.rows import EventRow, TaskRow
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


def task_id_of(event: EventRow) -> str:
    """The task a ``task_update`` event creates or updates (assigned at write time)."""
    return str(event.structured["task"]["task_id"])


def apply_update(current: TaskRow | None, event: EventRow) -> TaskRow:
    """The task after ``event``: created from it when ``current`` is None, else updated with the fields it
    carries (a field it leaves out keeps its value)."""
    fields = TaskFields.model_validate({k: v for k, v in event.structured["task"].items() if k != "task_id"})
    if current is None:
        return with_estimate(
            TaskRow(
                id=task_id_of(event),
                title=fields.title or event.text.strip().splitlines()[0][:300],
                status=fields.status or "open",
                owner=fields.owner or event.agent_id,
                session_id=event.session_id,
                channel=event.channel,
                sensitivity=event.sensitivity,
                note=fields.note,
                last_event_id=event.id,
                created_at=event.ts,
                updated_at=event.ts,
            )
        )
    return with_estimate(
        current.model_copy(
            update={
                "title": fields.title or current.title,
                "status": fields.status or current.status,
                "owner": fields.owner or current.owner,
                "note": fields.note if fields.note is not None else current.note,
                "last_event_id": event.id,
                "updated_at": max(current.updated_at, event.ts),
            }
        )
    )


def replay(events: Iterable[EventRow]) -> list[TaskRow]:
    """Task states after ``events`` (task updates, oldest first), most recently updated first."""
    tasks: dict[str, TaskRow] = {}
    for event in events:
        tasks[task_id_of(event)] = apply_update(tasks.get(task_id_of(event)), event)
    return sorted(tasks.values(), key=lambda t: (-t.updated_at.timestamp(), t.id))
