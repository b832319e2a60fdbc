"""``recall``: build the active context bundle for one call.

Order of work (each step bounded):

1. state — tenant (views, decisions in force, open tasks, pending handoffs) and session (newest events)
   from the hot set, or from the database when missing (the cold path) or when ``as_of`` asks for the past;
2. policy — the channel decides which sensitivities and views may be loaded, before anything is scored;
3. sections — identity and rules (views), the handoff (a pending packet is delivered now), open tasks,
   decisions (relevant ones first; superseded ones only with history), the recent window of the session
   (deduplicated), then evidence: a bounded candidate pool from full-text search (OR over the query's
   lexemes), vector search (pgvector) or none (then semantic similarity reranks the pool), recency, pins, tags
   and the time window the query names ("two weeks ago", "in May"), scored α·relevance + β·recency +
   γ·importance, relevance fusing BM25 with semantic similarity and the relevance of conversational neighbours;
4. every section is filled best-first up to its hard cap; what does not fit, or may not be shown, is listed
   in ``omissions`` with the reason.

A "continue" turn (``intent="continue"`` or an empty query) skips evidence retrieval: with a warm hot set
it runs no query at all (the fast path).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from agent_memory import tasks
from agent_memory.caller import Caller
from agent_memory.context import conflicts, temporal
from agent_memory.context.assembly import END_OF_TIME, Assembly, Filler, RecallRequest
from agent_memory.context.bundle import (
    Bundle,
    ConflictNote,
    Omission,
    PathTaken,
    Provenance,
    Section,
)
from agent_memory.context.evidence import add_evidence
from agent_memory.context.hotset import (
    AWAITING_AGENTS,
    DECISIONS,
    HANDOFFS,
    RECENT_EVENTS,
    TASKS,
    HotCache,
    SessionHot,
    TenantHot,
)
from agent_memory.context.policy import (
    DEFAULT_BUDGET,
    MIN_BUDGET,
    POLICY_VERSION,
    SECTIONS,
    caps_for,
    may_load,
)
from agent_memory.context.sections import add_decisions, add_recent, add_standing
from agent_memory.context.semantic import OFF, Closeness, Semantic, SemanticMode
from agent_memory.errors import Forbidden, InvalidInput
from agent_memory.ingest import derive_chunks
from agent_memory.store.database import Database, Tx
from agent_memory.store.rows import Candidate, HandoffRow, TaskRow
from agent_memory.vocabulary import CHANNELS

POOL_LEXICAL: Final = 600  # on LoCoMo a question matches a median 415 chunks: 500 lost nothing, 300 did
POOL_RECENT: Final = 200
POOL_PINNED: Final = 100
POOL_TAGGED: Final = 100
POOL_WINDOW: Final = 100  # the newest chunks inside a time window the query names
# ... plus at most semantic.NEIGHBOURS (200) found by vector search: 1,300 candidates at most
# The corpus (BM25) is counted up to POOL_SAMPLE chunks. A tenant with as many is large: a chunk matching any query
# word is a full-text candidate only among about its newest POOL_LEXICAL_REACH chunks (evidence_pool).
POOL_SAMPLE: Final = 20_000
POOL_LEXICAL_REACH: Final = 100_000
MATCHING_DECISIONS: Final = 200
DELIVERED_HANDOFFS: Final = 5
TASK_UPDATES_REPLAYED: Final = 5_000
REBUILD_EVENTS: Final = 2_000
MAX_TAGS: Final = 64
_WORDS: Final = re.compile(r"[\w][\w.-]*")


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


async def build(
    db: Database,
    hot: HotCache,
    caller: Caller,
    request: RecallRequest,
    *,
    chunk_tokens: int = 400,
    semantic: Semantic | None = None,
) -> Bundle:
    """The active context bundle for ``request`` (see the module docstring); ``semantic`` (the embedding model)
    makes evidence retrieval hybrid, lexical only without it."""
    check_request(request, caller)
    started = time.perf_counter()
    horizon = request.as_of or END_OF_TIME
    caps = caps_for(request.budget_tokens)
    assembly = Assembly(request, caller, {name: Filler(name, cap) for name, cap in caps.items()})
    if request.as_of is None and request.continuing:
        tenant_state, session_state = hot.tenant(caller.tenant), hot.session(caller.tenant, request.session_id)
        if (
            tenant_state
            and session_state
            and not _awaits(tenant_state, caller)
            and not _delivered(session_state, caller)
        ):
            # The fast path: everything from the hot set, no database round trip at all.
            reference = _reference_time(request, tenant_state, session_state)
            add_standing(assembly, tenant_state, [])
            await add_decisions(assembly, None, tenant_state, [], [], reference, horizon)
            add_recent(assembly, session_state, [])
            return _bundle(assembly, "fast", Retrieval(), {"total_ms": _since(started)}, reference)
    async with db.transaction(caller.tenant) as tx:
        tenant_state, session_state, cold = await _state(tx, hot, caller.tenant, request, horizon)
        timings = {"state_ms": _since(started)}
        rebuilt = await _rebuild_missing_chunks(tx, chunk_tokens) if cold else 0
        pending = await tx.pending_handoffs(caller.agent_id, HANDOFFS) if _awaits(tenant_state, caller) else []
        packets = [*pending, *_delivered(session_state, caller)]
        reference = _reference_time(request, tenant_state, session_state)
        add_standing(assembly, tenant_state, packets)
        retrieval = Retrieval()
        if not request.continuing or packets:
            stage = time.perf_counter()
            retrieval = await _retrieve(
                assembly, tx, tenant_state, session_state, packets, reference, horizon, semantic
            )
            timings["retrieval_ms"] = _since(stage)
        else:
            await add_decisions(assembly, tx, tenant_state, [], [], reference, horizon)
            add_recent(assembly, session_state, packets)
        shown = {ref for item in assembly.fillers["handoff"].items for ref in item.refs}
        delivered = await _deliver(tx, [p for p in packets if p.id in shown], request)
    if delivered:
        hot.invalidate(caller.tenant, "*")
    timings["total_ms"] = _since(started)
    path: PathTaken = "cold" if cold else ("retrieval" if "retrieval_ms" in timings else "fast")
    return _bundle(assembly, path, retrieval, timings, reference, rebuilt)


async def _rebuild_missing_chunks(tx: Tx, chunk_tokens: int) -> int:
    """After derived data was dropped, rebuild the chunks of up to ``REBUILD_EVENTS`` events (newest first)
    before anything is searched; the tenant stays marked until nothing is missing."""
    if not await tx.derived_stale():
        return 0
    missing = await tx.events_missing_chunks(REBUILD_EVENTS)
    chunks = [chunk for event in missing for chunk in derive_chunks(event, chunk_tokens)]
    await tx.insert_chunks(chunks)
    if len(missing) < REBUILD_EVENTS:
        await tx.set_derived_stale(False)
    return len(chunks)


@dataclass(frozen=True)
class Retrieval:
    """What the evidence search did: the query's lexemes, the candidate pool's size, the conflicts found, which
    semantic path it took, how many candidates had no vector, and the time window the query named."""

    terms: list[str] = field(default_factory=list)
    pool: int = 0
    conflicts: list[ConflictNote] = field(default_factory=list)
    semantic: SemanticMode = "off"
    without_vector: int = 0
    window: tuple[datetime, datetime] | None = None


async def _retrieve(
    assembly: Assembly,
    tx: Tx,
    tenant: TenantHot,
    session: SessionHot,
    packets: list[HandoffRow],
    reference: datetime | None,
    horizon: datetime,
    semantic: Semantic | None,
) -> Retrieval:
    """Search (full text, vectors, the time window the query names), find contradicted summaries among
    everything that may load, then fill decisions, the recent window and evidence — so that a summary loses to
    a newer event wherever either would appear."""
    query = _query_text(assembly.request, packets)
    terms, tsquery = await tx.query_terms(query)
    tags = sorted(set(terms) | set(_WORDS.findall(query.lower())))[:MAX_TAGS]
    matched = await tx.decisions_matching(horizon, tsquery, MATCHING_DECISIONS) if tsquery else []
    when = temporal.cue(query, await _cue_reference(tx, query, reference, horizon))
    search = await semantic.search(tx, query, horizon) if semantic is not None else OFF
    candidates = await tx.evidence_pool(
        horizon,
        terms,
        tags,
        list(search.neighbours),
        when.window,
        lexical=POOL_LEXICAL,
        recent=POOL_RECENT,
        pinned=POOL_PINNED,
        tagged=POOL_TAGGED,
        windowed=POOL_WINDOW,
        corpus_sample=POOL_SAMPLE,
        lexical_reach=POOL_LEXICAL_REACH,
    )
    similarity = await semantic.similarities(tx, search, candidates) if semantic is not None else Closeness()
    # only a summary or a fact can be contradicted: without one, nothing to parse (most queries of a chat)
    kinds = {c.kind for c in candidates} | {e.kind for e in session.recent}
    found = []
    if kinds & conflicts.SUMMARY_KINDS:
        found = conflicts.find(_statements(assembly, session, candidates, horizon))
    assembly.contradicted.update(f.older.id for f in found)
    named = [ident for packet in packets for ident in packet.decision_ids]
    await add_decisions(assembly, tx, tenant, matched, named, reference, horizon)
    add_recent(assembly, session, packets)
    boosted = {n.id for f in found for n in f.newer}
    add_evidence(
        assembly,
        candidates,
        packets,
        set(tags),
        boosted,
        reference,
        horizon,
        terms=terms,
        similarity=similarity,
        when=when,
    )
    notes = [
        ConflictNote(item=f.older.id, newer=[n.id for n in f.newer], says=f.says, newer_says=f.newer_says)
        for f in found
    ]
    return Retrieval(
        terms=terms,
        pool=len(candidates),
        conflicts=notes,
        semantic=search.mode,
        without_vector=sum(1 for c in candidates if c.id not in similarity.own) if search.mode != "off" else 0,
        window=when.window,
    )


async def _cue_reference(tx: Tx, query: str, reference: datetime | None, horizon: datetime) -> datetime | None:
    """What "two weeks ago" in ``query`` counts from: the bundle's reference time, else the newest event."""
    if reference is not None or not temporal.needs_reference(query):
        return reference
    return await tx.latest_event_ts(horizon)


def _statements(
    assembly: Assembly, session: SessionHot, candidates: list[Candidate], horizon: datetime
) -> list[conflicts.Statement]:
    """What may be shown in this bundle, as statements for the drift guard: the session's recent events and
    the evidence candidates the channel may load (superseded decisions and unreferenced summaries aside)."""
    channel = assembly.request.channel
    found: dict[str, conflicts.Statement] = {}
    for event in session.recent:
        if may_load(channel, event.sensitivity) and (event.kind != "summary" or event.refs):
            found[event.id] = conflicts.Statement(event.id, event.kind, event.ts, event.text)
    for c in candidates:
        superseded = c.superseded_at is not None and c.superseded_at <= horizon
        if may_load(channel, c.sensitivity) and not superseded and (c.kind != "summary" or c.event_refs):
            found.setdefault(c.event_id, conflicts.Statement(c.event_id, c.kind, c.ts, c.text))
    return sorted(found.values(), key=lambda s: (s.ts, s.id))


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
    generation = hot.generation(tenant)  # before reading: state a concurrent write outdates is not cached
    tenant_state = hot.tenant(tenant) if use_cache else None
    session_state = hot.session(tenant, request.session_id) if use_cache else None
    cold = False
    if tenant_state is None:
        cold = True
        awaiting = await tx.agents_awaiting_handoffs(AWAITING_AGENTS + 1) if use_cache else []
        tenant_state = TenantHot(
            views={row.name: row for row in await tx.list_views()},
            decisions=await tx.decisions_as_of(horizon, DECISIONS),
            tasks=await _tasks_at(tx, request.as_of),
            awaited_by=frozenset(awaiting) if len(awaiting) <= AWAITING_AGENTS else None,
        )
        if use_cache:
            hot.put_tenant(tenant, tenant_state, generation)
    if session_state is None:
        cold = True
        recent = await tx.recent_events(request.session_id, horizon, RECENT_EVENTS)
        decided = [event.id for event in recent if event.kind == "decision"]
        session_state = SessionHot(
            recent=recent,
            delivered=await tx.delivered_handoffs(request.session_id, DELIVERED_HANDOFFS) if use_cache else [],
            superseded=frozenset(await tx.superseded_decision_events(decided, horizon)),
        )
        if use_cache:
            hot.put_session(tenant, request.session_id, session_state, generation)
    return tenant_state, session_state, cold


async def _tasks_at(tx: Tx, as_of: datetime | None) -> list[TaskRow]:
    """Open tasks now, or as they stood at ``as_of`` (replayed from the task update events)."""
    if as_of is None:
        return await tx.open_tasks(TASKS)
    replayed = tasks.replay(await tx.task_updates_until(as_of, TASK_UPDATES_REPLAYED))
    return [t for t in replayed if t.status != "done"][:TASKS]


def _awaits(tenant_state: TenantHot, caller: Caller) -> bool:
    """Whether packets may be pending for this agent (this recall delivers them)."""
    return tenant_state.awaited_by is None or caller.agent_id in tenant_state.awaited_by


def _delivered(session_state: SessionHot, caller: Caller) -> list[HandoffRow]:
    """Packets an earlier recall delivered into this session for this agent: they keep shaping its bundles."""
    return [p for p in session_state.delivered if p.to_agent == caller.agent_id]


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


def _bundle(
    assembly: Assembly,
    path: PathTaken,
    retrieval: Retrieval,
    timings: dict[str, float],
    reference: datetime | None,
    rebuilt: int = 0,
) -> Bundle:
    fillers = assembly.fillers
    sections = [
        Section(name=name, items=fillers[name].items, token_est=fillers[name].used, cap=fillers[name].cap)
        for name in SECTIONS
    ]
    omissions = [
        Omission(section=section, reason=reason, ids=list(ids))
        for (section, reason), ids in sorted(assembly.omitted.items())
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
            rebuilt_chunks=rebuilt,
            semantic=retrieval.semantic,
            candidates_without_vector=retrieval.without_vector,
            time_window=retrieval.window,
        ),
    )
