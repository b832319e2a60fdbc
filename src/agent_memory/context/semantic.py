"""The semantic side of evidence retrieval: embed the query, find the nearest chunks, and give every candidate
that has a vector its cosine similarity to the query.

Two paths, chosen by what the database offers (the type of ``chunks.embedding``):

- ``pgvector``: an HNSW search finds the nearest chunks of the tenant (they join the candidate pool), and the
  similarity of every other candidate is computed by PostgreSQL;
- ``rerank``: without pgvector, vectors are stored as ``real[]``; the candidate pool stays the lexical, recent,
  pinned and tagged chunks, and their similarities are computed here, so semantics reorder that bounded pool.

Each chunk has two vectors (``embeddings.model``): the chunk alone, and the chunk in its context. The first
decides whether a candidate is close in meaning to the query at all (and is the one the HNSW index searches);
ranking blends both (``Closeness.ranking``).

When the query names the actor of some candidates ("What did Nate think of ..."), ranking uses the mean of the
query's vector and the vector of the query with those names replaced by "someone" (``anonymised``): who said it
is already matched exactly (by the actor and by the name as a word), and a name in the query vector makes every
short turn of that actor ("Nate: Take care!") look close in meaning. The search itself still uses the whole query.

Candidates without a vector of the current model (not embedded yet, or by another model) are scored lexically
only; provenance says how many there were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

import anyio
import numpy as np
import structlog

from agent_memory.embeddings.model import DIMENSION, MODEL_ID, Embedder, ModelUnavailable, cosine
from agent_memory.store.database import Tx
from agent_memory.store.rows import Candidate

if TYPE_CHECKING:
    from agent_memory.embeddings.model import Vectors

log = structlog.get_logger(__name__)

SemanticMode = Literal["pgvector", "rerank", "off"]
NEIGHBOURS: Final = 200  # chunks the HNSW search adds to the pool
CONTEXT_VECTOR_WEIGHT: Final = 0.8  # of the similarity that ranks a chunk, for its vector in context
EF_SEARCH: Final = 200
ANONYMOUS: Final = "someone"  # what stands for an actor named in the query, in the vector that ranks


@dataclass(frozen=True)
class Search:
    """What the semantic search found before the pool was gathered: the nearest chunks, each with the similarity
    of its vector and of its context vector (``None``: none)."""

    mode: SemanticMode
    vector: Vectors | None = None
    neighbours: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    query: str = ""


@dataclass(frozen=True)
class Closeness:
    """Cosine similarities to the query, by chunk id: of the chunk's own vector (``own``: whether it is close in
    meaning at all) and of its context vector (``in_context``)."""

    own: dict[str, float] = field(default_factory=dict)
    in_context: dict[str, float] = field(default_factory=dict)

    def ranking(self, chunk_id: str) -> float | None:
        """The similarity that ranks a chunk: ``CONTEXT_VECTOR_WEIGHT`` on its context vector, the rest on its own
        (its own alone when it has no context vector; ``None`` when it has no vector)."""
        own = self.own.get(chunk_id)
        context = self.in_context.get(chunk_id)
        if own is None or context is None:
            return own
        return (1 - CONTEXT_VECTOR_WEIGHT) * own + CONTEXT_VECTOR_WEIGHT * context


OFF: Final = Search("off")


class Semantic:
    """The embedding model and what the database offers for its vectors (found once, on first use)."""

    def __init__(self, embedder: Embedder, *, neighbours: int = NEIGHBOURS) -> None:
        self.embedder = embedder
        self.neighbours = neighbours
        self._column: str | None = None
        self._broken = False

    async def search(self, tx: Tx, query: str, horizon: datetime) -> Search:
        """Embed ``query``; with pgvector, also find its nearest chunks. ``OFF`` when the model cannot run."""
        if self._broken or not query.strip():
            return OFF
        try:
            vector = await anyio.to_thread.run_sync(self.embedder.embed_one, query)
        except ModelUnavailable as exc:
            self._broken = True
            log.error("the embedding model cannot run; recall is lexical only", error=str(exc))
            return OFF
        if self._column is None:
            self._column = await tx.embedding_column_type()
        if not self._column.startswith("vector"):
            return Search("rerank", vector, query=query)
        found = await tx.semantic_neighbours(vector.tolist(), horizon, MODEL_ID, self.neighbours, ef_search=EF_SEARCH)
        return Search("pgvector", vector, found, query=query)

    async def similarities(self, tx: Tx, search: Search, candidates: Sequence[Candidate]) -> Closeness:
        """The cosine similarities to the query of every candidate with a vector of the current model; when the
        query names actors of the candidates, to the mean of the query's vector and its anonymised one's."""
        if search.vector is None:
            return Closeness()
        vector, known = search.vector, search.neighbours
        named = named_actors(search.query, candidates)
        if named:
            anonymous = await anyio.to_thread.run_sync(self.embedder.embed_one, anonymised(search.query, named))
            mean = search.vector + anonymous
            vector, known = mean / max(float(np.linalg.norm(mean)), 1e-12), {}
        todo = [
            c.id
            for c in candidates
            if c.id not in known and c.embedding_model == MODEL_ID and c.embedding_dim == DIMENSION
        ]
        if search.mode == "pgvector":
            pairs = {**known, **await tx.similarities(todo, vector.tolist(), MODEL_ID)}
        else:
            pairs = _scored(vector, await tx.chunk_vectors(todo, MODEL_ID, DIMENSION))
        return Closeness(
            own={i: own for i, (own, _) in pairs.items()},
            in_context={i: context for i, (_, context) in pairs.items() if context is not None},
        )


def named_actors(query: str, candidates: Sequence[Candidate]) -> list[str]:
    """The actors of ``candidates`` that ``query`` names (as a word, in any case), longest first."""
    actors = {c.actor for c in candidates if c.actor and c.actor.strip()}
    found = [a for a in actors if re.search(rf"(?<!\w){re.escape(a)}(?!\w)", query, re.IGNORECASE)]
    return sorted(found, key=lambda a: (-len(a), a))


def anonymised(query: str, names: Sequence[str]) -> str:
    """``query`` with each of ``names`` (and its possessive) replaced by ``ANONYMOUS``."""
    for name in names:
        query = re.sub(rf"(?<!\w){re.escape(name)}(?:'s|’s)?(?!\w)", ANONYMOUS, query, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", query).strip()


def _scored(query: Vectors, stored: dict[str, tuple[Vectors, Vectors | None]]) -> dict[str, tuple[float, float | None]]:
    """Without pgvector: the similarities of the stored vectors (and context vectors) to the query's."""
    if not stored:
        return {}
    ids = list(stored)
    own = cosine(query, np.stack([stored[i][0] for i in ids])).tolist()
    with_context = {i: vector for i in ids if (vector := stored[i][1]) is not None}
    context: dict[str, float] = {}
    if with_context:
        scores = cosine(query, np.stack(list(with_context.values())))
        context = dict(zip(with_context, scores.tolist(), strict=True))
    return {i: (float(s), context.get(i)) for i, s in zip(ids, own, strict=True)}
