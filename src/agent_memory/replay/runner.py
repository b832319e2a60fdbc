"""Replaying a transcript: steps in order through a real MCP client, expectations checked after each.

The runner keeps the scenario's state — the simulated clock, the current agent, channel, session and
tenant, and the results saved with ``as`` — and records every step's latency for the report. A scenario
stops at its first failing step; the failure names the file, the step and the expectation.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcp.shared.exceptions import MCPError

from agent_memory import views
from agent_memory.reindex import reindex
from agent_memory.replay import seed as seeding
from agent_memory.replay.expect import ExpectationFailed, Outcome, check, dig
from agent_memory.replay.targets import Target
from agent_memory.replay.transcript import Step, Transcript
from agent_memory.store.database import Database

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_]\w*)((?:\.[\w-]+)*)\}")
_RELATIVE = re.compile(r"^([+-])(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SEED_BATCH = 500
TOOLS_WITH_CHANNEL = {"remember", "recall"}
TOOLS_WITH_AT = {"remember", "supersede_decision"}


class StepFailed(Exception):
    """A step that failed, with where and why."""

    def __init__(self, index: int, step: Step, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.step = step
        self.message = message


@dataclass
class StepReport:
    index: int
    action: str
    detail: str
    latency_ms: float
    ok: bool
    error: str | None = None
    result: dict[str, Any] | None = None


@dataclass
class ScenarioReport:
    id: str
    name: str
    principle: str
    file: str
    transport: str
    passed: bool = False
    duration_ms: float = 0.0
    failure: dict[str, Any] | None = None
    steps: list[StepReport] = field(default_factory=list)


def moment(spec: str, now: datetime) -> datetime:
    """``spec`` (``+14d``, ``-2h``, or an ISO time) as a time, relative ones counted from ``now``."""
    match = _RELATIVE.match(spec.strip())
    if match:
        amount = float(match[2]) * (1 if match[1] == "+" else -1)
        return now + timedelta(**{_UNITS[match[3]]: amount})
    try:
        parsed = datetime.fromisoformat(spec)
    except ValueError as exc:
        msg = f"at: {spec!r} is neither a relative time (+14d, -2h) nor an ISO 8601 time"
        raise ValueError(msg) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class _State:
    tenant: str
    base_tenant: str
    agent: str
    channel: str
    session: str
    clock: datetime
    saved: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Replays transcripts against one target (and, for store steps, one database)."""

    def __init__(self, target: Target, db: Database | None) -> None:
        self.target = target
        self.db = db

    async def run(self, transcript: Transcript, path: Path) -> ScenarioReport:
        """Replay ``transcript``; the report says whether it passed and what each step took."""
        base = f"{transcript.id.lower()}-{secrets.token_hex(3)}"
        state = _State(
            tenant=base,
            base_tenant=base,
            agent=transcript.agent,
            channel=transcript.channel,
            session=transcript.session,
            clock=moment(transcript.start, datetime.now(UTC)),
        )
        report = ScenarioReport(transcript.id, transcript.name, transcript.principle, str(path), self.target.name)
        started = time.perf_counter()
        try:
            for index, step in enumerate(transcript.steps):
                report.steps.append(await self._step(index, step, state))
            report.passed = True
        except StepFailed as failed:
            report.failure = {
                "file": str(path),
                "step": failed.index,
                "action": failed.step.action,
                "note": failed.step.note,
                "message": failed.message,
            }
        finally:
            await self.target.restart()
        report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return report

    async def _step(self, index: int, step: Step, state: _State) -> StepReport:
        try:
            state.clock = moment(step.at, state.clock) if step.at else state.clock + timedelta(seconds=1)
        except ValueError as exc:
            raise StepFailed(index, step, str(exc)) from exc
        started = time.perf_counter()
        try:
            outcome, detail = await self._act(step, state)
        except (ExpectationFailed, KeyError, ValueError, MCPError) as exc:
            raise StepFailed(index, step, f"{step.action}: {exc}") from exc
        latency = round((time.perf_counter() - started) * 1000, 3)
        if outcome.error is not None and not any("error" in spec for spec in step.expect):
            raise StepFailed(index, step, f"{detail} failed: {outcome.error}")
        for spec in step.expect:
            resolved = _substitute(spec, state.saved)
            try:
                check(outcome, resolved)
            except ExpectationFailed as exc:
                raise StepFailed(index, step, f"expectation {resolved} failed: {exc}") from exc
        if step.as_ and outcome.structured is not None:
            state.saved[step.as_] = outcome.structured
        return StepReport(index, step.action, detail, latency, True, outcome.error, outcome.structured)

    async def _act(self, step: Step, state: _State) -> tuple[Outcome, str]:
        if step.tool is not None:
            return await self._tool(step.tool, _substitute(step.args, state.saved), state), step.tool
        if step.read is not None:
            uri = _substitute(step.read, state.saved)
            result = await (await self.target.client(state.tenant, state.agent)).read_resource(uri)
            text = "\n".join(getattr(c, "text", "") for c in result.contents)
            return Outcome(None, text), f"read {uri}"
        if step.use is not None:
            return _use(step, state)
        if step.control is not None:
            await self._control(step.control, state)
            return Outcome(None, ""), step.control
        if step.seed is not None:
            count = await self._seed(step, state)
            return Outcome({"events": step.seed.count, "chunks": count}, ""), f"seed {step.seed.count}"
        return await self._store_step(step, state)

    async def _store_step(self, step: Step, state: _State) -> tuple[Outcome, str]:
        """A ``view`` written as a person would, or ``store`` assertions."""
        if step.view is not None:
            row = await views.set_view(self._database(), state.tenant, step.view.name, step.view.body, "replay")
            return Outcome(row.model_dump(mode="json"), row.body), f"view {step.view.name}"
        for spec in step.store or []:
            await self._store_check(_substitute(spec, state.saved), state)
        return Outcome(None, ""), "store"

    async def _tool(self, tool: str, args: dict[str, Any], state: _State) -> Outcome:
        args = dict(args)
        args.setdefault("agent_id", state.agent)
        args.setdefault("session_id", state.session)
        if tool in TOOLS_WITH_CHANNEL:
            args.setdefault("channel", state.channel)
        if tool in TOOLS_WITH_AT:
            if "events" in args:
                args["events"] = [
                    {"at": (state.clock + timedelta(milliseconds=i)).isoformat(), **event}
                    for i, event in enumerate(args["events"])
                ]
            else:
                args.setdefault("at", state.clock.isoformat())
        result = await (await self.target.client(state.tenant, state.agent)).call_tool(tool, args)
        text = "\n".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            return Outcome(None, text, error=text)
        return Outcome(result.structured_content, text)

    async def _control(self, control: str, state: _State) -> None:
        if control == "restart":
            await self.target.restart()
            return
        db = self._database()
        if control == "drop_caches":
            await db.notify_everything_changed()
        elif control == "drop_derived":
            async with db.transaction(state.tenant) as tx:
                await tx.delete_all_chunks()
            await db.notify_everything_changed()
        else:
            await reindex(db, tenant=state.tenant)

    async def _seed(self, step: Step, state: _State) -> int:
        seed = step.seed
        assert seed is not None
        start, end = moment(seed.span[0], state.clock), moment(seed.span[1], state.clock)
        if seed.bulk:
            return await seeding.bulk(self._database(), state.tenant, state.agent, seed, start, end)
        events = [
            {"text": text, "at": ts.isoformat(), "kind": seed.kind, "channel": seed.channel}
            for text, ts in zip(seeding.texts(seed), seeding.times(seed, start, end), strict=True)
        ]
        client = await self.target.client(state.tenant, state.agent)
        chunks = 0
        for offset in range(0, len(events), SEED_BATCH):
            arguments = {
                "events": events[offset : offset + SEED_BATCH],
                "session_id": seed.session,
                "agent_id": state.agent,
            }
            result = await client.call_tool("remember", arguments)
            if result.is_error or result.structured_content is None:
                raise ExpectationFailed(f"seeding failed: {getattr(result.content[0], 'text', '')}")
            chunks += sum(len(e["chunk_ids"]) for e in result.structured_content["events"])
        return chunks

    async def _store_check(self, spec: dict[str, Any], state: _State) -> None:
        db = self._database()
        if "absent" in spec:
            tables = await db.tables_containing(spec["absent"])
            if tables:
                raise ExpectationFailed(f"{spec['absent']!r} is stored in {', '.join(tables)}")
        elif "present" in spec:
            if not await db.tables_containing(spec["present"]):
                raise ExpectationFailed(f"{spec['present']!r} is in no table")
        elif "count" in spec:
            async with db.transaction(state.tenant) as tx:
                rows = await tx.count_rows(spec["count"])
            if rows < spec.get("at_least", 0) or rows > spec.get("at_most", rows):
                raise ExpectationFailed(f"{spec['count']} has {rows} rows of this tenant; expected {spec}")
        else:
            raise ExpectationFailed(f"unknown store assertion {spec} (known: absent, present, count)")

    def _database(self) -> Database:
        if self.db is None:
            msg = "this step reads or writes the database directly: give the replay --database-url"
            raise ExpectationFailed(msg)
        return self.db


def _use(step: Step, state: _State) -> tuple[Outcome, str]:
    """Switch agent, channel, session or tenant for the following steps."""
    use = step.use
    assert use is not None
    state.agent = use.agent or state.agent
    state.channel = use.channel or state.channel
    state.session = use.session or state.session
    if use.tenant is not None:
        state.tenant = f"{state.base_tenant}-{use.tenant}"
    return Outcome(None, ""), f"use {use.model_dump(exclude_none=True)}"


def _default_id(result: Any) -> Any:
    if isinstance(result, dict):
        if result.get("events"):
            return result["events"][0]["id"]
        if isinstance(result.get("decision"), dict):
            return result["decision"]["id"]
        if "id" in result:
            return result["id"]
    raise ExpectationFailed("this saved result has no id; name a field: ${name.field}")


def _substitute(value: Any, saved: dict[str, Any]) -> Any:
    """``value`` with every ``${name}`` / ``${name.path}`` replaced from the saved results."""
    if isinstance(value, dict):
        return {k: _substitute(v, saved) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, saved) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def resolve(match: re.Match[str]) -> Any:
        name, path = match[1], match[2].lstrip(".")
        if name not in saved:
            raise ExpectationFailed(f"${{{name}}} was never saved (saved: {', '.join(saved) or 'nothing'})")
        return dig(saved[name], path) if path else _default_id(saved[name])

    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        return resolve(whole)
    return _PLACEHOLDER.sub(lambda m: str(resolve(m)), value)
