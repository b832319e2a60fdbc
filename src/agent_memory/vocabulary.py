"""The product's closed vocabularies (PRODUCT.md §2) as types shared by every layer."""

from __future__ import annotations

from typing import Literal, get_args

EventKind = Literal[
    "message", "tool_call", "tool_result", "decision", "task_update", "summary", "fact", "preference", "artifact"
]
Channel = Literal["private", "team", "agent", "public"]
Sensitivity = Literal["none", "low", "high", "secret"]
TaskStatus = Literal["open", "doing", "blocked", "done"]
ViewName = Literal["identity", "rules", "preferences", "glossary"]

EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
CHANNELS: tuple[str, ...] = get_args(Channel)
SENSITIVITIES: tuple[str, ...] = get_args(Sensitivity)
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
VIEW_NAMES: tuple[str, ...] = get_args(ViewName)
