"""Hybrid relevance: BM25 over the pool, linear fusion with cosine similarity, conversational context."""

from __future__ import annotations

from agent_memory.context import scoring


def test_bm25_prefers_rare_terms_over_common_ones() -> None:
    """A document matching the rare query term outranks one matching only a term most documents share."""
    docs = [["caroline", "go", "group", "support"], ["caroline", "paint"], ["caroline", "lunch"], ["melani", "run"]]
    scores = scoring.bm25(docs, ["caroline", "support"], corpus=4)
    assert scores[0] > scores[1] == scores[2] > scores[3] == 0


def test_hybrid_uses_meaning_and_treats_missing_vectors_as_neutral() -> None:
    """Similarity carries most weight; without any vector the result is the lexical score scaled by the best and
    sharpened (``LEXICAL_POWER``); a document without a vector gets the median similarity of the others."""
    assert scoring.hybrid([2.0, 1.0], [None, None]) == [1.0, 0.5**scoring.LEXICAL_POWER]
    fused = scoring.hybrid([0.0, 1.0, 0.5], [0.9, 0.1, None])
    assert fused[0] > fused[1]
    assert fused[2] > 0


def test_context_lifts_the_neighbours_of_a_relevant_item() -> None:
    """Each item gains a share of its best neighbour's relevance."""
    lifted = scoring.with_context([0.0, 1.0, 0.2], [[1], [0, 2], [1]])
    assert lifted[0] == scoring.CONTEXT_WEIGHT
    assert lifted[2] > 0.2
    assert lifted[1] == 1.0 + scoring.CONTEXT_WEIGHT * 0.2
