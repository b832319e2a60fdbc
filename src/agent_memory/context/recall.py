"""``recall``: build the active context bundle for one call.

Order of work (each step bounded):

1. state — tenant (views, decisions in force, open tasks, pending handoffs) and session (newest events)
   from the hot set, or from the database when missing (the cold path) or when ``as_of`` asks for the past;
2. policy — the channel decides which sensitivities and views may be loaded, before anything is scored;
3. sections — identity and rules (views), the handoff (a pending packet is delivered now), open tasks,
   decisions (relevant ones first; superseded ones only with history), the recent window of the session
   (deduplicated), then evidence: a bounded candidate pool from full-text search (OR over the query's
   lexemes), recency, pins and tags, scored α·relevance + β·recency + γ·importance;
4. every section is filled best-first up to its hard cap; what does not fit, or may not be shown, is listed
   in ``omissions`` with the reason.

A "continue" turn (``intent="continue"`` or an empty query) skips evidence retrieval: with a warm hot set
it runs no query at all (the fast path).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from agent_memory import tasks
from agent_memory.caller import Caller
from agent_memory.context import conflicts, scoring
from agent_memory.context.bundle import (
    Bundle,
    ConflictNote,
    Item,
    Omission,
    OmissionReason,
    PathTaken,
    Provenance,
    Section,
)
from agent_memory.context.hotset import DECISIONS, HANDOFFS, RECENT_EVENTS, TASKS, HotCache, SessionHot, TenantHot
from agent_memory.context.policy import (
    DEFAULT_BUDGET,
    MIN_BUDGET,
    POLICY_VERSION,
    SECTIONS,
    VIEW_SECTION,
    VIEWS_LOADED,
    caps_for,
    may_load,
)
from agent_memory.errors import Forbidden, InvalidInput
from agent_memory.handoffs import handoff_text
from agent_memory.store.database import Database, Tx
from agent_memory.store.rows import Candidate, DecisionRow, EventRow, HandoffRow, TaskRow
from agent_memory.text import estimate_tokens
from agent_memory.vocabulary import CHANNELS, VIEW_NAMES, Channel

END_OF_TIME: Final = datetime(9999, 12, 31, tzinfo=UTC)
POOL_LEXICAL: Final = 1_500
POOL_RECENT: Final = 300
POOL_PINNED: Final = 100
POOL_TAGGED: Final = 100
MAX_EVIDENCE_ITEMS: Final = 200
MAX_HANDOFF_EVIDENCE: Final = 20
MATCHING_DECISIONS: Final = 200
DELIVERED_HANDOFFS: Final = 5
TASK_UPDATES_REPLAYED: Final = 5_000
MAX_TAGS: Final = 64
TAG_RELEVANCE: Final = 0.5  # a tag naming a word of the query counts as a fair lexical match
_WORDS: Final = re.compile(r"[\w][\w.-]*")


@dataclass(frozen=True)
class RecallRequest:
    """What the caller asked for."""

    query: str
    session_id: str
    channel: Channel
    budget_tokens: int = DEFAULT_BUDGET
    intent: str | None = None
    include_history: bool = False
    as_of: datetime | None = None

    @property
    def continuing(self) -> bool:
        return self.intent == "continue" or not self.query.strip()


@dataclass
class _Filler:
    """One section being filled best-first under its cap."""

    name: str
    cap: int
    items: list[Item] = field(default_factory=list)
    used: int = 0

    def fits(self, tokens: int) -> bool:
        return self.used + tokens <= self.cap

    def add(self, item: Item) -> None:
        self.items.append(item)
        self.used += item.token_est


@dataclass
class _Assembly:
    request: RecallRequest
    caller: Caller
    fillers: dict[str, _Filler]
    omitted: dict[tuple[str, OmissionReason], list[str]] = field(default_factory=lambda: defaultdict(list))
    loaded_events: set[str] = field(default_factory=set)
    loaded_texts: set[str] = field(default_factory=set)
    loaded_decisions: set[str] = field(default_factory=set)
    considered: int = 0

    def omit(self, section: str, reason: OmissionReason, ident: str) -> None:
        if ident not in self.omitted[(section, reason)]:
            self.omitted[(section, reason)].append(ident)

    def offer(self, section: str, item: Item, ident: str) -> bool:
        """Add ``item`` if it fits the section's cap; otherwise record a budget omission."""
        self.considered += 1
        filler = self.fillers[section]
        if filler.fits(item.token_est):
            filler.add(item)
            return True
        self.omit(section, "budget", ident)
        return False


def check_request(request: RecallRequest, caller: Caller) -> None:
    """Reject arguments that cannot make a bundle, naming the field."""
    if request.channel not in CHANNELS:
        raise InvalidInput("channel", f"{request.channel!r} is not a channel", ", ".join(CHANNELS))
    if request.channel not in caller.channels:
        raise Forbidden(f"channel: this caller may not use the {request.channel} channel")
    if not MIN_BUDGET <= request.budget_tokens <= DEFAULT_BUDGET:
        raise InvalidInput(
            "budget_tokens", f"{request.budget_tokens} is out of range", f"{MIN_BUDGET} to {DEFAULT_BUDGET}"
        )
    if request.as_of is not None and request.as_of.tzinfo is None:
        raise InvalidInput("as_of", "has no timezone offset", "ISO 8601 with an offset, e.g. 2026-11-01T09:00:00Z")
    if request.intent not in {None, "continue", "answer", "plan", "review"}:
        raise InvalidInput("intent", f"{request.intent!r} is not an intent", "continue, answer, plan, review")


async def build(db: Database, hot: HotCache, caller: Caller, request: RecallRequest) -> Bundle:
    """The active context bundle for ``request`` (see the module docstring)."""
    check_request(request, caller)
    started = time.perf_counter()
    horizon = request.as_of or END_OF_TIME
    caps = caps_for(request.budget_tokens)
    assembly = _Assembly(request, caller, {name: _Filler(name, cap) for name, cap in caps.items()})
    if request.as_of is None and request.continuing:
        tenant_state, session_state = hot.tenant(caller.tenant), hot.session(caller.tenant, request.session_id)
        if tenant_state and session_state and not _packets(tenant_state, session_state, caller):
            # The fast path: everything from the hot set, no database round trip at all.
            reference = _reference_time(request, tenant_state, session_state)
            _standing_sections(assembly, tenant_state, [])
            await _decisions(assembly, None, tenant_state, [], [], reference, horizon)
            _recent(assembly, session_state, [])
            return _bundle(assembly, "fast", Retrieval(), {"total_ms": _since(started)}, reference)
    async with db.transaction(caller.tenant) as tx:
        tenant_state, session_state, cold = await _state(tx, hot, caller.tenant, request, horizon)
        timings = {"state_ms": _since(started)}
        packets = _packets(tenant_state, session_state, caller)
        reference = _reference_time(request, tenant_state, session_state)
        _standing_sections(assembly, tenant_state, packets)
        retrieval = Retrieval()
        if not request.continuing or packets:
            stage = time.perf_counter()
            retrieval = await _retrieve(assembly, tx, tenant_state, session_state, packets, reference, horizon)
            timings["retrieval_ms"] = _since(stage)
        else:
            await _decisions(assembly, tx, tenant_state, [], [], reference, horizon)
            _recent(assembly, session_state, packets)
        delivered = await _deliver(tx, packets, request)
    if delivered:
        hot.invalidate(caller.tenant, "*")
    timings["total_ms"] = _since(started)
    path: PathTaken = "cold" if cold else ("retrieval" if "retrieval_ms" in timings else "fast")
    return _bundle(assembly, path, retrieval, timings, reference)


@dataclass(frozen=True)
class Retrieval:
    """What the evidence search did: the query's lexemes, the candidate pool's size, the conflicts found."""

    terms: list[str] = field(default_factory=list)
    pool: int = 0
    conflicts: list[ConflictNote] = field(default_factory=list)


def _standing_sections(assembly: _Assembly, tenant: TenantHot, packets: list[HandoffRow]) -> None:
    """The sections that need no query: identity and rules, the handoff, open tasks."""
    _views(assembly, tenant)
    _handoff(assembly, packets)
    _tasks(assembly, tenant.tasks)


async def _retrieve(
    assembly: _Assembly,
    tx: Tx,
    tenant: TenantHot,
    session: SessionHot,
    packets: list[HandoffRow],
    reference: datetime | None,
    horizon: datetime,
) -> Retrieval:
    """Decisions relevant to the query (and the packets), the recent window, then evidence."""
    query = _query_text(assembly.request, packets)
    terms, tsquery = await tx.query_terms(query)
    tags = sorted(set(terms) | set(_WORDS.findall(query.lower())))[:MAX_TAGS]
    matched = await tx.decisions_matching(horizon, tsquery, MATCHING_DECISIONS) if tsquery else []
    named = [ident for packet in packets for ident in packet.decision_ids]
    await _decisions(assembly, tx, tenant, matched, named, reference, horizon)
    _recent(assembly, session, packets)
    candidates = await tx.evidence_candidates(
        horizon, tsquery, tags, lexical=POOL_LEXICAL, recent=POOL_RECENT, pinned=POOL_PINNED, tagged=POOL_TAGGED
    )
    found = _evidence(assembly, candidates, packets, set(tags), reference, horizon)
    return Retrieval(terms=terms, pool=len(candidates), conflicts=found)


async def _deliver(tx: Tx, packets: list[HandoffRow], request: RecallRequest) -> bool:
    """Mark the pending packets of this bundle delivered into the session (not when rebuilding the past)."""
    pending = [p.id for p in packets if p.status == "pending"]
    if not pending or request.as_of is not None:
        return False
    await tx.mark_handoffs_delivered(pending, request.session_id)
    await tx.notify_change("*")
    return True


def _since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def _state(
    tx: Tx, hot: HotCache, tenant: str, request: RecallRequest, horizon: datetime
) -> tuple[TenantHot, SessionHot, bool]:
    """Tenant and session state: from the hot set when warm (and no ``as_of``), else from the database."""
    use_cache = request.as_of is None
    tenant_state = hot.tenant(tenant) if use_cache else None
    session_state = hot.session(tenant, request.session_id) if use_cache else None
    cold = False
    if tenant_state is None:
        cold = True
        handoffs = await tx.pending_handoffs(HANDOFFS) if use_cache else []
        tenant_state = TenantHot(
            views={row.name: row for row in await tx.list_views()},
            decisions=await tx.decisions_as_of(horizon, DECISIONS),
            tasks=await _tasks_at(tx, request.as_of),
            handoffs=handoffs,
        )
        if use_cache:
            hot.put_tenant(tenant, tenant_state)
    if session_state is None:
        cold = True
        session_state = SessionHot(
            recent=await tx.recent_events(request.session_id, horizon, RECENT_EVENTS),
            delivered=await tx.delivered_handoffs(request.session_id, DELIVERED_HANDOFFS) if use_cache else [],
        )
        if use_cache:
            hot.put_session(tenant, request.session_id, session_state)
    return tenant_state, session_state, cold


async def _tasks_at(tx: Tx, as_of: datetime | None) -> list[TaskRow]:
    """Open tasks now, or as they stood at ``as_of`` (replayed from the task update events)."""
    if as_of is None:
        return await tx.open_tasks(TASKS)
    replayed = tasks.replay(await tx.task_updates_until(as_of, TASK_UPDATES_REPLAYED))
    return [t for t in replayed if t.status != "done"][:TASKS]


def _packets(tenant_state: TenantHot, session_state: SessionHot, caller: Caller) -> list[HandoffRow]:
    """Packets for this agent: pending ones (delivered by this recall) and those delivered to this session."""
    pending = [p for p in tenant_state.handoffs if p.to_agent == caller.agent_id]
    delivered = [p for p in session_state.delivered if p.to_agent == caller.agent_id]
    return [*pending, *delivered]


def _query_text(request: RecallRequest, packets: list[HandoffRow]) -> str:
    parts = [] if request.continuing else [request.query]
    for packet in packets:
        parts.extend([packet.task, *packet.open_questions, *packet.constraints])
    return "\n".join(parts)


def _reference_time(request: RecallRequest, tenant: TenantHot, session: SessionHot) -> datetime | None:
    """What recency is measured from: ``as_of``, else the newest thing the state holds (never the clock)."""
    if request.as_of is not None:
        return request.as_of
    times = [e.ts for e in session.recent] + [d.ts for d in tenant.decisions] + [t.updated_at for t in tenant.tasks]
    return max(times, default=None)


def _views(assembly: _Assembly, tenant: TenantHot) -> None:
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
            if room < 16:
                assembly.omit(section, "budget", uri)
                continue
            text = row.body[: max(0, (room - 12) * 4)].rstrip() + f" … [truncated; read {uri}]"
            tokens = min(room, estimate_tokens(text))
        assembly.offer(
            section,
            Item(text=text, refs=[uri], kind=f"view:{name}", ts=row.updated_at, score=1.0, token_est=tokens),
            uri,
        )


def _handoff(assembly: _Assembly, packets: list[HandoffRow]) -> None:
    for packet in packets:
        item = Item(
            text=handoff_text(packet),
            refs=[packet.id, *packet.decision_ids, *packet.refs],
            kind="handoff",
            ts=packet.created_at,
            score=1.0,
            token_est=packet.token_est,
        )
        assembly.offer("handoff", item, packet.id)


def _tasks(assembly: _Assembly, open_tasks: list[TaskRow]) -> None:
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


async def _decisions(
    assembly: _Assembly,
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
        handed_over = decision.id in named and decision.sensitivity != "secret"
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


def _recent(assembly: _Assembly, session: SessionHot, packets: list[HandoffRow]) -> None:
    """The session's newest events, newest first until the cap, shown oldest first; one item per text."""
    senders = {p.from_agent for p in packets} - {assembly.caller.agent_id}
    chosen: list[Item] = []
    filler = assembly.fillers["recent"]
    for event in session.recent:
        if event.agent_id in senders:
            continue  # a handoff replaces the sender's transcript
        if not _loadable(assembly, "recent", event.id, event.sensitivity, event.kind, event.refs):
            continue
        if event.text_hash in assembly.loaded_texts or event.id in assembly.loaded_events:
            assembly.omit("recent", "duplicate", event.id)
            continue
        assembly.considered += 1
        if not filler.fits(event.token_est):
            assembly.omit("recent", "budget", event.id)
            continue
        item = Item(
            text=_event_text(event), refs=[event.id], kind=event.kind, ts=event.ts, score=0.0, token_est=event.token_est
        )
        filler.add(item)
        chosen.append(item)
        assembly.loaded_events.update({event.id, event.duplicate_of or event.id})
        assembly.loaded_texts.add(event.text_hash)
    filler.items = list(reversed(chosen))


def _event_text(event: EventRow) -> str:
    return f"{event.actor}: {event.text}" if event.actor else event.text


def _loadable(assembly: _Assembly, section: str, ident: str, sensitivity: str, kind: str, refs: Iterable[str]) -> bool:
    if not may_load(assembly.request.channel, sensitivity):
        assembly.omit(section, "privacy", ident)
        return False
    if kind == "summary" and not list(refs):
        assembly.omit(section, "unreferenced summary", ident)
        return False
    return True


def _evidence(
    assembly: _Assembly,
    candidates: list[Candidate],
    packets: list[HandoffRow],
    query_tags: set[str],
    reference: datetime | None,
    horizon: datetime,
) -> list[ConflictNote]:
    """Filter, check for contradicted summaries, score and pack the candidate pool."""
    request = assembly.request
    kept: list[Candidate] = []
    handed_over = {ref for p in packets for ref in p.refs}
    for c in sorted(candidates, key=lambda c: (c.event_id, c.seq)):
        # What a packet references was handed over on purpose: it loads wherever the packet does.
        sensitivity = "none" if c.event_id in handed_over and c.sensitivity != "secret" else c.sensitivity
        if not _loadable(assembly, "evidence", c.event_id, sensitivity, c.kind, c.event_refs):
            continue
        superseded = c.superseded_at is not None and c.superseded_at <= horizon
        if superseded and not request.include_history:
            assembly.omit("evidence", "superseded", c.decision_id or c.event_id)
            continue
        if (
            c.event_id in assembly.loaded_events
            or c.text_hash in assembly.loaded_texts
            or (c.decision_id and c.decision_id in assembly.loaded_decisions)
        ):
            assembly.omit("evidence", "duplicate", c.event_id)
            continue
        kept.append(c)
    statements = [conflicts.Statement(c.event_id, c.kind, c.ts, c.text) for c in kept]
    found = conflicts.find(statements)
    contradicted = {f.older.id for f in found}
    boosted = {n.id for f in found for n in f.newer}
    for ident in sorted(contradicted):
        assembly.omit("evidence", "conflict", ident)
    top = max((c.rank for c in kept), default=0.0) or 1.0
    ranked = []
    for c in kept:
        if c.event_id in contradicted:
            continue
        relevance = max(c.rank / top, TAG_RELEVANCE if query_tags.intersection(c.tags) else 0.0)
        value = scoring.score(relevance, scoring.recency(c.ts, reference), c.importance)
        forced = c.pinned or c.event_id in boosted or c.event_id in handed_over
        # chunk ids change when chunks are rebuilt; (event, seq) does not, so bundles survive a reindex
        position = f"{c.event_id}:{c.seq:06d}"
        ranked.append((not forced, scoring.order_key(value, c.importance, c.ts, c.token_est, position), c, value))
    limit = MAX_HANDOFF_EVIDENCE if packets else MAX_EVIDENCE_ITEMS
    seen_text: set[tuple[str, int]] = set()
    taken = 0
    for _, _, c, value in sorted(ranked, key=lambda r: (r[0], r[1])):
        if (c.text_hash, c.seq) in seen_text:
            assembly.omit("evidence", "duplicate", c.event_id)
            continue
        if taken >= limit:
            assembly.omit("evidence", "budget", c.event_id)
            continue
        refs = [c.event_id, *([c.decision_id] if c.decision_id else []), *c.event_refs]
        item = Item(
            text=c.text, refs=list(dict.fromkeys(refs)), kind=c.kind, ts=c.ts, score=value, token_est=c.token_est
        )
        if assembly.offer("evidence", item, c.event_id):
            seen_text.add((c.text_hash, c.seq))
            taken += 1
    return [
        ConflictNote(item=f.older.id, newer=[n.id for n in f.newer], says=f.says, newer_says=f.newer_says)
        for f in found
    ]


def _bundle(
    assembly: _Assembly, path: PathTaken, retrieval: Retrieval, timings: dict[str, float], reference: datetime | None
) -> Bundle:
    fillers = assembly.fillers
    sections = [
        Section(name=name, items=fillers[name].items, token_est=fillers[name].used, cap=fillers[name].cap)
        for name in SECTIONS
    ]
    omissions = [
        Omission(section=section, reason=reason, ids=ids) for (section, reason), ids in sorted(assembly.omitted.items())
    ]
    request = assembly.request
    return Bundle(
        sections=sections,
        budget_tokens=request.budget_tokens,
        token_used_est=sum(s.token_est for s in sections),
        omissions=omissions,
        conflicts=retrieval.conflicts,
        provenance=Provenance(
            path=path,
            query_terms=retrieval.terms,
            candidate_pool=retrieval.pool,
            items_considered=assembly.considered,
            timings_ms=timings,
            policy_version=POLICY_VERSION,
            channel=request.channel,
            as_of=request.as_of,
            reference_time=reference,
        ),
    )
