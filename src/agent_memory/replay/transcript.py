"""The transcript format: one JSON file per scenario, a list of steps replayed through a real MCP client.

```json
{
  "id": "A3",
  "name": "supersession",
  "principle": "P1: decisions are superseded, never overwritten",
  "description": "what the transcript shows and why it matters",
  "start": "-30d",
  "steps": [
    {"tool": "remember", "args": {"text": "Budget is 32K.", "kind": "decision"}, "as": "d1"},
    {"tool": "supersede_decision", "args": {"decision_id": "${d1.events.0.decision_id}", "text": "Budget is 65K."},
     "at": "+2d", "as": "d2"},
    {"tool": "recall", "args": {"query": "what is the budget now?"},
     "expect": [{"section": "decisions", "contains": "65K"}, {"omitted": "superseded", "id": "${d1.events.0.decision_id}"}]},
    {"control": "restart"},
    {"use": {"agent": "agent-b", "channel": "agent"}},
    {"read": "memory://rules", "expect": [{"text_contains": "cite"}]},
    {"store": [{"absent": "sk-live-..."}]}
  ]
}
```

Steps (exactly one action key each, plus the optional ``as``, ``at``, ``expect`` and ``note``):

| action | what it does |
|---|---|
| ``tool`` + ``args`` | calls an MCP tool; the current agent, channel and session fill ``agent_id``, ``channel`` and ``session_id`` when the tool takes them and ``args`` does not say |
| ``read`` | reads a resource by URI |
| ``control`` | ``restart`` (a new server process, same database), ``drop_caches`` (every server forgets its hot set), ``drop_derived`` (deletes the tenant's chunks: derived data), ``reindex`` (rebuilds them) |
| ``use`` | switches ``agent``, ``channel``, ``session`` or ``tenant`` for the following steps |
| ``view`` | writes a view as a person would (``{"name": "rules", "body": "..."}``) |
| ``seed`` | bulk history: ``count`` events from ``texts`` templates (``{i}`` is the number), spread over ``span`` (``["-40d", "-15d"]``), in ``session``, ``kind``, ``channel``; ``bulk: true`` writes them straight to the store (for tens of thousands) instead of through batched ``remember`` |
| ``store`` | assertions on the database itself (below) |

``at``: when the step happens, on the scenario's simulated clock. ``"+14d"``/``"-2h"`` move the clock relative to
where it is (units s, m, h, d, w); an ISO time sets it. The clock starts at ``start`` (relative to now, default
``-60d``) and ticks one second per step; ``remember`` calls without their own ``at`` get the clock's time.

``as``: names the step's structured result; ``${name}`` in any later string is replaced by the result's id
(``events.0.id`` for ``remember``, ``decision.id`` for ``supersede_decision``, ``id`` otherwise) and
``${name.dotted.path}`` by any field (list indexes are numbers).

Expectations on a tool call's result (``expect``):

| expectation | holds when |
|---|---|
| ``{"section": S, "contains": T}`` / ``"not_contains"`` | an item of section ``S`` (``"*"``: any section) contains ``T`` / none does |
| ``{"section": S, "has_ref": ID}`` / ``"lacks_ref"`` | an item of ``S`` cites ``ID`` / none does |
| ``{"section": S, "max_items": N}`` / ``"min_items"`` / ``"max_tokens"`` | the section's item count or tokens |
| ``{"total_tokens_at_most": N}`` | the bundle's ``token_used_est`` |
| ``{"omitted": REASON, "id": ID}`` | ``ID`` (optional) is among the omissions for ``REASON`` |
| ``{"conflict": {"item": ID, "newer": ID}}`` | a conflict names those ids (either key optional) |
| ``{"provenance": {"path": P, "candidate_pool_at_most": N, "items_considered_at_most": N}}`` | provenance fields |
| ``{"field": PATH, "equals": V}`` / ``"contains"`` / ``"at_most"`` / ``"at_least"`` | a field of the structured result |
| ``{"error": TEXT}`` | the call failed, with ``TEXT`` in its message (otherwise any error fails the step) |
| ``{"text_contains": T}`` / ``{"text_not_contains": T}`` | the text content (resources, renderings) |

Store assertions (``store``): ``{"absent": T}`` — ``T`` is in no column of any table; ``{"present": T}``;
``{"count": TABLE, "at_least": N, "at_most": N}`` — rows of the current tenant.
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
