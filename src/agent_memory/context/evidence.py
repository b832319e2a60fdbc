"""Evidence: filter the bounded candidate pool (policy, superseded, duplicates, unreferenced or contradicted
summaries), score it (lexical and semantic rankings fused, time window, recency, importance) and pack the best
of it under the section's cap."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Final

from agent_memory.context import scoring, temporal
from agent_memory.context.assembly import Assembly
from agent_memory.context.bundle import Item
from agent_memory.context.semantic import Closeness
from agent_memory.context.temporal import TimeCue
from agent_memory.store.rows import Candidate, HandoffRow

MAX_EVIDENCE_ITEMS: Final = 200
MAX_HANDOFF_EVIDENCE: Final = 20
TAG_RELEVANCE: Final = 0.5  # a tag naming a word of the query counts as a fair lexical match
SEMANTIC_FLOOR: Final = 0.25  # below this cosine similarity a chunk is not close in meaning (MiniLM scale)
ACTOR_BOOST: Final = 0.3  # relevance gained by what the actor named in the query said
WINDOW_RELEVANCE: Final = 0.25  # of the best relevance, added for a chunk inside the time window the query names


def add_evidence(
    assembly: Assembly,
    candidates: list[Candidate],
    packets: list[HandoffRow],
    query_tags: set[str],
    boosted: set[str],
    reference: datetime | None,
    horizon: datetime,
    *,
    terms: Sequence[str] = (),
    similarity: Closeness | None = None,
    when: TimeCue = temporal.NONE,
) -> None:
    """Filter, score and pack the candidate pool. With a query, a candidate that matches none of its words
    (by text or tag), is not semantically close to it and is outside the time window it names is not evidence,
    however recent; pinned, handed-over and contradiction-winning events come first."""
    kept = _filter(assembly, candidates, packets, horizon)
    handed_over = handed_over_refs(assembly, packets)
    relevance = _relevance(kept, terms, query_tags, similarity or Closeness(), when)
    beta = scoring.BETA_LATEST if when.prefer_recent else scoring.BETA
    ranked = []
    for c in kept:
        forced = c.pinned or c.event_id in boosted or c.event_id in handed_over
        if query_tags and relevance.get(c.id, 0.0) == 0 and not forced:
            continue
        value = scoring.score(relevance.get(c.id, 0.0), scoring.recency(c.ts, reference), c.importance, beta=beta)
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
        if assembly.offer_made("evidence", c.token_est, partial(_item, c, value), c.event_id):
            seen_text.add((c.text_hash, c.seq))
            taken += 1


def _item(c: Candidate, value: float) -> Item:
    """The evidence item of ``c``, scored ``value``: the event, its decision and what the event cites as refs."""
    refs = [c.event_id, *([c.decision_id] if c.decision_id else []), *c.event_refs]
    return Item(text=c.text, refs=list(dict.fromkeys(refs)), kind=c.kind, ts=c.ts, score=value, token_est=c.token_est)


def _relevance(
    kept: list[Candidate], terms: Sequence[str], query_tags: set[str], similarity: Closeness, when: TimeCue
) -> dict[str, float]:
    """Chunk id -> relevance in [0, 1]: BM25 over the pool (a tag naming a word of the query counts as a fair
    match) fused with semantic similarity (of the chunk alone and in its context), raised by the best of its
    neighbours in the conversation, scaled by the best; more inside the query's time window. A candidate that
    matches no word, is less than ``SEMANTIC_FLOOR`` similar by itself (its context does not count here) and lies
    outside the window scores 0 (it is not evidence), whatever its neighbours."""
    if not kept:
        return {}
    lexical = scoring.bm25(
        [c.matched for c in kept], terms, max(c.corpus_size for c in kept), lengths=[c.lexeme_count for c in kept]
    )
    top = max(lexical, default=0.0) or 1.0
    lexical = [
        max(value, TAG_RELEVANCE * top) if query_tags.intersection(c.tags) else value
        for value, c in zip(lexical, kept, strict=True)
    ]
    fused = _by_actor(kept, query_tags, scoring.hybrid(lexical, [similarity.ranking(c.id) for c in kept]))
    base = [
        value if lex > 0 or similarity.own.get(c.id, -1.0) >= SEMANTIC_FLOOR or when.contains(c.ts) else 0.0
        for value, lex, c in zip(fused, lexical, kept, strict=True)
    ]
    # context lifts the neighbours of relevant turns, but never makes an irrelevant one evidence
    smoothed = [v if b > 0 else 0.0 for v, b in zip(scoring.with_context(base, _neighbours(kept)), base, strict=True)]
    if when.window is not None:
        bonus = WINDOW_RELEVANCE * max(smoothed)
        smoothed = [v + bonus if when.contains(c.ts) else v for v, c in zip(smoothed, kept, strict=True)]
    best = max(smoothed) or 1.0
    return {c.id: round(value / best, 6) for c, value in zip(kept, smoothed, strict=True)}


def _by_actor(kept: list[Candidate], query_words: set[str], values: list[float]) -> list[float]:
    """Who said it: when the query names the actor of some candidates (not of all), theirs weigh ``ACTOR_BOOST``
    more ("what does Melanie like" is about what Melanie said, more than what was said to her)."""
    named = [c.actor is not None and c.actor.lower() in query_words for c in kept]
    if not any(named) or all(named):
        return values
    return [v * (1 + ACTOR_BOOST) if n else v for v, n in zip(values, named, strict=True)]


def _neighbours(kept: list[Candidate]) -> list[list[int]]:
    """For each candidate, the positions (in ``kept``) of the candidates up to ``CONTEXT_REACH`` before and after
    it in its session, in time order."""
    sessions: dict[str, list[int]] = defaultdict(list)
    for index, c in enumerate(kept):
        sessions[c.session_id].append(index)
    near: list[list[int]] = [[] for _ in kept]
    reach = scoring.CONTEXT_REACH
    for members in sessions.values():
        members.sort(key=lambda i: (kept[i].ts, kept[i].event_id, kept[i].seq))
        for at, index in enumerate(members):
            window = range(max(0, at - reach), min(len(members), at + reach + 1))
            near[index] = [members[j] for j in window if j != at]
    return near


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
