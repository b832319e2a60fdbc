"""The semantic side of evidence retrieval: embed the query, find the nearest chunks, and give every candidate
that has a vector its cosine similarity to the query.

Two paths, chosen by what the database offers (the type of ``chunks.embedding``):

- ``pgvector``: an HNSW search finds the nearest chunks of the tenant (they join the candidate pool), and the
  similarity of every other candidate is computed by PostgreSQL;
- ``rerank``: without pgvector, vectors are stored as ``real[]``; the candidate pool stays the lexical, recent,
  pinned and tagged chunks, and their similarities are computed here, so semantics reorder that bounded pool.

Candidates without a vector of the current model (not embedded yet, or by another model) are scored lexically
only; provenance says how many there were.
"""

from __future__ import annotations

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
EF_SEARCH: Final = 200


@dataclass(frozen=True)
class Search:
    """What the semantic search found before the pool was gathered."""

    mode: SemanticMode
    vector: Vectors | None = None
    neighbours: dict[str, float] = field(default_factory=dict)


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
            return Search("rerank", vector)
        found = await tx.semantic_neighbours(vector.tolist(), horizon, MODEL_ID, self.neighbours, ef_search=EF_SEARCH)
        return Search("pgvector", vector, found)

    async def similarities(self, tx: Tx, search: Search, candidates: Sequence[Candidate]) -> dict[str, float]:
        """Chunk id -> cosine similarity to the query, for every candidate with a vector of the current model."""
        if search.vector is None:
            return {}
        todo = [
            c.id
            for c in candidates
            if c.id not in search.neighbours and c.embedding_model == MODEL_ID and c.embedding_dim == DIMENSION
        ]
        if search.mode == "pgvector":
            return {**search.neighbours, **await tx.similarities(todo, search.vector.tolist(), MODEL_ID)}
        stored = await tx.chunk_vectors(todo, MODEL_ID, DIMENSION)
        if not stored:
            return {}
        ids = list(stored)
        scores = cosine(search.vector, np.stack([stored[i] for i in ids]))
        return {i: float(s) for i, s in zip(ids, scores.tolist(), strict=True)}
