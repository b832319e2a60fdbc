"""Rebuild everything derived (P2): chunks from events, in bounded batches, one transaction per batch; and
(``embed_chunks``, ``reindex --embeddings``) the vectors of chunks that have none of the current model.

Chunk texts and token estimates come from the same ``derive_chunks`` the write path uses, so recall
returns the same bundles afterwards. Every server drops the tenant's hot set (NOTIFY ``tenant/*``) when its
chunks are rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent_memory.embeddings.model import Embedder
from agent_memory.embeddings.worker import embed_tenant
from agent_memory.ingest import derive_chunks
from agent_memory.store.database import Database

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ReindexReport:
    """What a reindex did."""

    tenants: int
    events: int
    chunks: int


async def reindex(
    db: Database,
    *,
    tenant: str | None = None,
    batch: int = 1000,
    chunk_tokens: int = 400,
    progress: Progress | None = None,
) -> ReindexReport:
    """Rebuild the chunks of ``tenant`` (or of every tenant), ``batch`` events at a time."""
    tenants = [tenant] if tenant else await db.tenants()
    events = chunks = 0
    for name in tenants:
        async with db.transaction(name) as tx:
            total = await tx.count_events()
        done, after = 0, ""
        while True:
            async with db.transaction(name) as tx:
                page = await tx.events_after(after, batch)
                if not page:
                    break
                await tx.delete_chunks_of_events([e.id for e in page])
                derived = [chunk for event in page for chunk in derive_chunks(event, chunk_tokens)]
                await tx.insert_chunks(derived)
            after = page[-1].id
            done += len(page)
            chunks += len(derived)
            if progress:
                progress(name, done, total)
        events += done
        async with db.transaction(name) as tx:
            await tx.set_derived_stale(False)
            await tx.notify_change("*")
    return ReindexReport(tenants=len(tenants), events=events, chunks=chunks)


async def embed_chunks(
    db: Database, embedder: Embedder, *, tenant: str | None = None, batch: int = 32, progress: Progress | None = None
) -> ReindexReport:
    """Embed every chunk of ``tenant`` (or of every tenant) that has no vector of the current model (vectors of
    another model are dropped and made again), ``batch`` chunks per transaction."""
    tenants = [tenant] if tenant else await db.tenants()
    chunks = 0
    for name in tenants:
        chunks += await embed_tenant(db, embedder, name, batch=batch, progress=progress or (lambda *_: None))
    return ReindexReport(tenants=len(tenants), events=0, chunks=chunks)
