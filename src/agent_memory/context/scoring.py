"""Ranking: score = α·relevance + β·recency + γ·importance, with deterministic tie-breaks (P7).

Evidence relevance is hybrid: BM25 over the candidate pool (``bm25``) fused linearly with the cosine similarity
of the chunk's vector to the query's (``hybrid``), then raised by the best of its conversational neighbours
(``with_context``). docs/retrieval.md gives the measurements behind each constant.

Recency is measured from a reference time taken from the store (the newest item considered, or ``as_of``),
never from the wall clock, so the same store and request give the same bundle.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Final

ALPHA: Final = 0.6
BETA: Final = 0.25
GAMMA: Final = 0.15
HALF_LIFE_DAYS: Final = 7.0
BETA_LATEST: Final = 0.5  # recency weight when the query asks for the latest occurrence ("last time")
BM25_K1: Final = 1.2
BM25_B: Final = 0.75
SEMANTIC_WEIGHT: Final = 0.65  # of relevance, for cosine similarity (the rest: BM25 scaled by the best, squared)
LEXICAL_POWER: Final = 2  # BM25 scaled by the best, raised to this: matching only a query's common words weighs little
CONTEXT_WEIGHT: Final = 0.4  # of the best neighbour's relevance added to an item's
CONTEXT_REACH: Final = 2  # items before and after in the same session that count as its neighbours


def recency(ts: datetime | None, reference: datetime | None) -> float:
    """1.0 at the reference time, halving every week before it."""
    if ts is None or reference is None:
        return 0.0
    age_days = max(0.0, (reference - ts).total_seconds() / 86_400)
    return float(0.5 ** (age_days / HALF_LIFE_DAYS))


def score(relevance: float, recency_value: float, importance: float, *, beta: float = BETA) -> float:
    """The combined score, rounded so that float noise never reorders equal items. ``beta`` is raised when the
    query asks for the latest occurrence ("last time")."""
    return round(ALPHA * relevance + beta * recency_value + GAMMA * importance, 6)


def bm25(
    docs: Sequence[Collection[str]], terms: Sequence[str], corpus: int = 0, *, lengths: Sequence[int] | None = None
) -> list[float]:
    """BM25 of each document (its distinct lexemes, or only those of the query, with ``lengths`` its numbers of
    distinct lexemes) for the query's lexemes. Document frequencies are counted in ``docs`` (the bounded pool
    holds every document matching a query term unless there are very many), the corpus size is ``corpus`` (at
    least ``len(docs)``); a lexeme counts once per document."""
    if not docs or not terms:
        return [0.0] * len(docs)
    sets = [set(d) for d in docs]
    sizes = [max(1, n) for n in (lengths if lengths is not None else [len(d) for d in docs])]
    average = sum(sizes) / len(sizes)
    size = max(corpus, len(docs))
    weights = {}
    for term in set(terms):
        df = sum(1 for d in sets if term in d)
        if df:
            weights[term] = math.log((size - df + 0.5) / (df + 0.5) + 1)
    scores = []
    for d, length in zip(sets, sizes, strict=True):
        matched = sum(w for term, w in weights.items() if term in d)
        scores.append(
            matched * (BM25_K1 + 1) / (1 + BM25_K1 * (1 - BM25_B + BM25_B * length / average)) if matched else 0.0
        )
    return scores


def hybrid(lexical: Sequence[float], similarity: Sequence[float | None]) -> list[float]:
    """Lexical scores (scaled by the best, to the power ``LEXICAL_POWER``) and cosine similarities fused linearly,
    ``SEMANTIC_WEIGHT`` on meaning. A document without a vector gets the median similarity of the others (neither
    helped nor hurt); with no vectors at all the result is the scaled lexical score."""
    top = max(lexical, default=0.0) or 1.0
    scaled = [(value / top) ** LEXICAL_POWER for value in lexical]
    present = sorted(s for s in similarity if s is not None)
    if not present:
        return scaled
    neutral = present[len(present) // 2]
    return [
        SEMANTIC_WEIGHT * max(0.0, neutral if s is None else s) + (1 - SEMANTIC_WEIGHT) * value
        for value, s in zip(scaled, similarity, strict=True)
    ]


def with_context(values: Sequence[float], neighbours: Sequence[Sequence[int]]) -> list[float]:
    """Conversation context: each value plus ``CONTEXT_WEIGHT`` times the best of its neighbours' (the items up
    to ``CONTEXT_REACH`` before and after it in its session), so the turns around a relevant one rise with it."""
    return [
        value + CONTEXT_WEIGHT * max((values[j] for j in near), default=0.0)
        for value, near in zip(values, neighbours, strict=True)
    ]


def order_key(
    score_value: float, importance: float, ts: datetime | None, token_est: int, ident: str
) -> tuple[float, float, float, int, str]:
    """Sort key: score, then importance, then recency, then smaller size, then id."""
    return (-score_value, -importance, -(ts.timestamp() if ts else 0.0), token_est, ident)
