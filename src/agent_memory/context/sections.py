"""The bundle's sections besides evidence: views (identity, rules), the handoff, open tasks, decisions in
force and the recent window of the session."""

from __future__ import annotations

from datetime import datetime

from agent_memory import tasks
from agent_memory.context import scoring
from agent_memory.context.assembly import Assembly
from agent_memory.context.bundle import Item
from agent_memory.context.hotset import SessionHot, TenantHot
from agent_memory.context.policy import VIEW_SECTION, VIEWS_LOADED, may_load
from agent_memory.handoffs import handoff_text
from agent_memory.store.database import Tx
from agent_memory.store.rows import DecisionRow, EventRow, HandoffRow, TaskRow
from agent_memory.text import estimate_tokens
from agent_memory.vocabulary import VIEW_NAMES


def add_standing(assembly: Assembly, tenant: TenantHot, packets: list[HandoffRow]) -> None:
    """The sections that need no query: identity and rules, the handoff, open tasks."""
    add_views(assembly, tenant)
    add_handoff(assembly, packets)
    add_tasks(assembly, tenant.tasks)


def add_views(assembly: Assembly, tenant: TenantHot) -> None:
    allowed = VIEWS_LOADED[assembly.request.channel]
    for name in VIEW_NAMES:
        row = tenant.views.get(name)
        if row is None or not row.body.strip():
            continue
        section = VIEW_SECTION[name]
        uri = f"memory://{name}"
        if name not in allowed:
            assembly.omit(section, "privacy", uri)
            continue
        text, tokens = row.body, row.token_est
        filler = assembly.fillers[section]
        room = filler.cap - filler.used
        if tokens > room:
            text, tokens = _truncated(row.body, room, uri)
            if not text:
                assembly.omit(section, "budget", uri)
                continue
        assembly.offer(
            section,
            Item(text=text, refs=[uri], kind=f"view:{name}", ts=row.updated_at, score=1.0, token_est=tokens),
            uri,
        )


def _truncated(body: str, room: int, uri: str) -> tuple[str, int]:
    """The longest head of ``body`` that, with a note pointing to the whole, fits ``room`` tokens by the same
    estimate the caps are checked with; ("", 0) when not even the note fits."""
    note = f" … [truncated; read {uri}]"
    chars = max(0, (room - estimate_tokens(note)) * 4)
    while chars > 0:
        text = body[:chars].rstrip() + note
        tokens = estimate_tokens(text)
        if tokens <= room:
            return text, tokens
        chars = chars * room // (tokens + 1)  # shrink in proportion to the overshoot
    return "", 0


def add_handoff(assembly: Assembly, packets: list[HandoffRow]) -> None:
    """The packets for this agent; the public channel shows none (they stay pending)."""
    for packet in packets:
        if assembly.request.channel == "public":
            assembly.omit("handoff", "privacy", packet.id)
            continue
        item = Item(
            text=handoff_text(packet),
            refs=[packet.id, *packet.decision_ids, *packet.refs],
            kind="handoff",
            ts=packet.created_at,
            score=1.0,
            token_est=packet.token_est,
        )
        assembly.offer("handoff", item, packet.id)


def add_tasks(assembly: Assembly, open_tasks: list[TaskRow]) -> None:
    session = assembly.request.session_id
    ordered = sorted(open_tasks, key=lambda t: (t.session_id != session, -t.updated_at.timestamp(), t.id))
    for task in ordered:
        if not may_load(assembly.request.channel, task.sensitivity):
            assembly.omit("task_state", "privacy", task.id)
            continue
        item = Item(
            text=tasks.task_line(task.title, task.status, task.owner, task.note),
            refs=[task.id, task.last_event_id],
            kind="task",
            ts=task.updated_at,
            score=1.0 if task.session_id == session else 0.5,
            token_est=task.token_est,
        )
        assembly.offer("task_state", item, task.id)


async def add_decisions(
    assembly: Assembly,
    tx: Tx | None,
    tenant: TenantHot,
    matched: list[tuple[DecisionRow, float]],
    named: list[str],
    reference: datetime | None,
    horizon: datetime,
) -> None:
    """Decisions in force, the ones relevant to the query (and those a packet names) first; superseded ones
    only with ``include_history``, marked, else listed as omitted."""
    request = assembly.request
    top = max((rank for _, rank in matched), default=0.0) or 1.0
    relevance = {d.id: rank / top for d, rank in matched}
    in_force = {d.id: d for d in tenant.decisions}
    missing = [i for i in named if i not in in_force]
    extra = {d.id: d for d in await tx.decisions_by_ids(missing)} if missing and tx is not None else {}
    candidates: dict[str, DecisionRow] = {**in_force, **{d.id: d for d, _ in matched}, **extra}
    ranked = []
    for decision in candidates.values():
        superseded = decision.superseded_at is not None and decision.superseded_at <= horizon
        if superseded and not request.include_history:
            if decision.id in relevance:
                assembly.omit("decisions", "superseded", decision.id)
            continue
        handed_over = assembly.request.channel == "agent" and decision.id in named and decision.sensitivity != "secret"
        if not handed_over and not may_load(request.channel, decision.sensitivity):
            assembly.omit("decisions", "privacy", decision.id)
            continue
        forced = decision.pinned or decision.id in named
        value = scoring.score(
            relevance.get(decision.id, 0.0), scoring.recency(decision.ts, reference), decision.importance
        )
        key = scoring.order_key(value, decision.importance, decision.ts, decision.token_est, decision.id)
        ranked.append((not forced, key, decision, value, superseded))
    for _, _, decision, value, superseded in sorted(ranked, key=lambda r: (r[0], r[1])):
        text = decision.text if not decision.rationale else f"{decision.text} (why: {decision.rationale})"
        if superseded:
            text = f"[superseded by {decision.superseded_by}] {text}"
        refs = [
            decision.id,
            decision.event_id,
            *[r for r in decision.refs if r not in {decision.id, decision.event_id}],
        ]
        item = Item(text=text, refs=refs, kind="decision", ts=decision.ts, score=value, token_est=decision.token_est)
        if assembly.offer("decisions", item, decision.id):
            assembly.loaded_decisions.add(decision.id)
            assembly.loaded_events.add(decision.event_id)


def add_recent(assembly: Assembly, session: SessionHot, packets: list[HandoffRow]) -> None:
    """The session's newest events, newest first until the cap, shown oldest first; one item per text."""
    senders = {p.from_agent for p in packets} - {assembly.caller.agent_id}
    chosen: list[Item] = []
    filler = assembly.fillers["recent"]
    for event in session.recent:
        if event.agent_id in senders:
            continue  # a handoff replaces the sender's transcript
        if not assembly.loadable("recent", event.id, event.sensitivity, event.kind, event.refs):
            continue
        if event.id in assembly.contradicted:
            assembly.omit("recent", "conflict", event.id)
            continue
        if event.id in session.superseded and not assembly.request.include_history:
            assembly.omit("recent", "superseded", event.id)
            continue
        if event.text_hash in assembly.loaded_texts or event.id in assembly.loaded_events:
            assembly.omit("recent", "duplicate", event.id)
            continue
        assembly.considered += 1
        if not filler.fits(event.token_est):
            assembly.omit("recent", "budget", event.id)
            continue
        item = Item(
            text=event_text(event), refs=[event.id], kind=event.kind, ts=event.ts, score=0.0, token_est=event.token_est
        )
        filler.add(item)
        chosen.append(item)
        assembly.loaded_events.update({event.id, event.duplicate_of or event.id})
        assembly.loaded_texts.add(event.text_hash)
    filler.items = list(reversed(chosen))


def event_text(event: EventRow) -> str:
    return f"{event.actor}: {event.text}" if event.actor else event.text
