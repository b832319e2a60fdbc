"""The transcript format of the scenario harness: one JSON file per scenario, a list of steps.

docs/scenarios.md describes every step and expectation with examples; the models below are the schema.
A step has exactly one action (``tool``, ``read``, ``control``, ``use``, ``seed``, ``store``, ``view``) and
optionally ``as`` (save the result), ``at`` (move the simulated clock), ``expect`` and ``note``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ACTIONS = ("tool", "read", "control", "use", "seed", "store", "view")
TOOLS = ("remember", "recall", "supersede_decision", "handoff_packet")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Use(Strict):
    """Switches for the following steps."""

    agent: str | None = None
    channel: Literal["private", "team", "agent", "public"] | None = None
    session: str | None = None
    tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,48}$")


class Seed(Strict):
    """Bulk history."""

    count: int = Field(ge=1, le=1_000_000)
    texts: list[str] = Field(min_length=1)
    span: tuple[str, str] = ("-60d", "-30d")
    session: str = "history"
    kind: str = "message"
    channel: Literal["private", "team", "agent", "public"] = "team"
    bulk: bool = False


class View(Strict):
    name: Literal["identity", "rules", "preferences", "glossary"]
    body: str


class Step(Strict):
    """One step of a transcript (exactly one action)."""

    tool: Literal["remember", "recall", "supersede_decision", "handoff_packet"] | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    read: str | None = None
    control: Literal["restart", "drop_caches", "drop_derived", "reindex"] | None = None
    use: Use | None = None
    seed: Seed | None = None
    store: list[dict[str, Any]] | None = None
    view: View | None = None
    as_: str | None = Field(default=None, alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    at: str | None = None
    expect: list[dict[str, Any]] = Field(default_factory=list)
    note: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            msg = f"a step needs exactly one of {', '.join(ACTIONS)}; found {', '.join(given) or 'none'}"
            raise ValueError(msg)
        if self.args and self.tool is None:
            msg = "args go with tool"
            raise ValueError(msg)
        return self

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) is not None)


class Transcript(Strict):
    """A scenario: what it proves and the steps that prove it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str
    principle: str
    description: str = ""
    start: str = "-60d"
    session: str = "main"
    agent: str = "agent-a"
    channel: Literal["private", "team", "agent", "public"] = "private"
    steps: list[Step] = Field(min_length=1)


class TranscriptError(Exception):
    """A transcript file that cannot be replayed: names the file, the step and the field."""


def load(path: Path) -> Transcript:
    """Read and validate one transcript file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{path}: cannot read ({exc.strerror})"
        raise TranscriptError(msg) from exc
    except json.JSONDecodeError as exc:
        msg = f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
        raise TranscriptError(msg) from exc
    try:
        return Transcript.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = list(error["loc"])
        where = ""
        if len(location) >= 2 and location[0] == "steps":
            where = f"step {location[1]}: "
            location = location[2:]
        field = ".".join(str(part) for part in location) or "transcript"
        msg = f"{path}: {where}{field}: {error['msg']}"
        raise TranscriptError(msg) from exc
