"""Evidence: filter the bounded candidate pool (policy, superseded, duplicates, unreferenced or contradicted
summaries), score it and pack the best of it under the section's cap."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from agent_memory.context import scoring
from agent_memory.context.assembly import Assembly
from agent_memory.context.bundle import Item
from agent_memory.store.rows import Candidate, HandoffRow

MAX_EVIDENCE_ITEMS: Final = 200
MAX_HANDOFF_EVIDENCE: Final = 20
TAG_RELEVANCE: Final = 0.5  # a tag naming a word of the query counts as a fair lexical match


def add_evidence(
    assembly: Assembly,
    candidates: list[Candidate],
    packets: list[HandoffRow],
    query_tags: set[str],
    boosted: set[str],
    reference: datetime | None,
    horizon: datetime,
) -> None:
    """Filter, score and pack the candidate pool. With a query, a candidate that matches none of its words
    (by text or tag) is not evidence, however recent; pinned, handed-over and contradiction-winning events
    come first."""
    kept = _filter(assembly, candidates, packets, horizon)
    handed_over = handed_over_refs(assembly, packets)
    top = max((c.rank for c in kept), default=0.0) or 1.0
    ranked = []
    for c in kept:
        relevance = max(c.rank / top, TAG_RELEVANCE if query_tags.intersection(c.tags) else 0.0)
        forced = c.pinned or c.event_id in boosted or c.event_id in handed_over
        if query_tags and relevance == 0 and not forced:
            continue
        value = scoring.score(relevance, scoring.recency(c.ts, reference), c.importance)
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


def handed_over_refs(assembly: Assembly, packets: list[HandoffRow]) -> set[str]:
    """Events the packets reference: in the agent channel they load even where their sensitivity would not
    (the sender handed them over on purpose); elsewhere the channel policy holds."""
    if assembly.request.channel != "agent":
        return set()
    return {ref for p in packets for ref in p.refs}


def _filter(
    assembly: Assembly, candidates: list[Candidate], packets: list[HandoffRow], horizon: datetime
) -> list[Candidate]:
    """The candidates that may load: channel policy, no superseded decision (unless history), no summary
    without refs or contradicted, nothing already loaded in another section."""
    request = assembly.request
    handed_over = handed_over_refs(assembly, packets)
    kept: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (c.event_id, c.seq)):
        # What a packet references was handed over on purpose: it loads wherever the packet does.
        sensitivity = "none" if c.event_id in handed_over and c.sensitivity != "secret" else c.sensitivity
        if not assembly.loadable("evidence", c.event_id, sensitivity, c.kind, c.event_refs):
            continue
        superseded = c.superseded_at is not None and c.superseded_at <= horizon
        if superseded and not request.include_history:
            assembly.omit("evidence", "superseded", c.decision_id or c.event_id)
            continue
        if c.event_id in assembly.contradicted:
            assembly.omit("evidence", "conflict", c.event_id)
            continue
        if (
            c.event_id in assembly.loaded_events
            or c.text_hash in assembly.loaded_texts
            or (c.decision_id and c.decision_id in assembly.loaded_decisions)
        ):
            assembly.omit("evidence", "duplicate", c.event_id)
            continue
        kept.append(c)
    return kept
