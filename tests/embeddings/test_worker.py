"""The background embedder and ``reindex --embeddings``: vectors are made off the write path, in batches, with
their model and dimension recorded, and nothing that goes wrong stops the embedder."""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_memory.embeddings.model import DIMENSION, MODEL_ID, Embedder, Stopped
from agent_memory.embeddings.worker import BACKGROUND_NICENESS, BackgroundEmbedder, BackgroundThread, run_embedder
from agent_memory.reindex import embed_chunks
from agent_memory.runtime import Runtime, local_identity
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.helpers import call

pytestmark = pytest.mark.anyio


async def vector_counts(db: Database) -> tuple[int, int]:
    """(chunks with a vector of the current model, chunks without one)."""
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE embedding_model = $1 AND embedding_dim = $2 AND embedding IS NOT NULL),"
            " count(*) FILTER (WHERE embedding_model IS NULL) FROM chunks",
            MODEL_ID,
            DIMENSION,
        )
    return int(row[0]), int(row[1])


class Counter:
    """Chunks the embedder reports, with an event set once ``target`` is reached."""

    def __init__(self) -> None:
        self.total = 0
        self.target = 0
        self.reached = anyio.Event()

    def expect(self, target: int) -> anyio.Event:
        self.target, self.reached = target, anyio.Event()
        if self.total >= target:
            self.reached.set()
        return self.reached

    def __call__(self, _tenant: str, count: int) -> None:
        self.total += count
        if self.total >= self.target:
            self.reached.set()


async def test_remember_stores_no_vector_and_the_worker_embeds_in_the_background(client: Client, db: Database) -> None:
    """``remember`` returns before any vector exists; the running embedder (its start-up sweep, then the NOTIFY of
    each later write) embeds every new chunk, with the model id and dimension recorded."""
    texts = [f"Note {i}: the nightly build of module {i} failed on the linker step." for i in range(5)]
    await call(client, "remember", events=[{"text": t} for t in texts])
    assert await vector_counts(db) == (0, 5)
    counter = Counter()
    worker = BackgroundEmbedder(db, Embedder(), batch=2, tenant_filter="local", on_embedded=counter)
    async with anyio.create_task_group() as group:
        ready = anyio.Event()
        group.start_soon(worker.run, ready)
        with anyio.fail_after(60):
            await ready.wait()
            await counter.expect(5).wait()
            await call(client, "remember", text="A sixth note, written while the embedder runs.")
            await counter.expect(6).wait()
        group.cancel_scope.cancel()
    assert await vector_counts(db) == (6, 0)


async def test_the_embedder_survives_a_failing_batch(db: Database, client: Client) -> None:
    """A batch whose embedding raises is logged; the tenant is retried at its next write and then embedded."""
    await call(client, "remember", text="The release train leaves every second Tuesday.")
    embedder = Embedder()
    failed = anyio.Event()
    real = embedder.embed

    def flaky(texts: Any, stop: Any = None) -> Any:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("simulated failure of the model")
        return real(texts, stop)

    embedder.embed = flaky  # type: ignore[method-assign]
    counter = Counter()
    worker = BackgroundEmbedder(db, embedder, tenant_filter="local", sweep_every=3600, on_embedded=counter)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        with anyio.fail_after(60):
            await failed.wait()
            await call(client, "remember", text="A later write wakes the embedder again.")
            await counter.expect(2).wait()
        group.cancel_scope.cancel()
    assert await vector_counts(db) == (2, 0)


async def test_the_queue_is_bounded_and_never_blocks(db: Database) -> None:
    """Waking more tenants than the queue holds refuses the extra ones at once (a later sweep finds them); a
    tenant already waiting is not queued twice."""
    depths: list[int] = []
    worker = BackgroundEmbedder(db, Embedder(), queue=2, on_queue=depths.append)
    assert worker.wake("a")
    assert worker.wake("a")
    assert worker.wake("b")
    assert not worker.wake("c")
    assert depths == [1, 2]  # the depth is reported as it changes (the server's embedding-queue gauge)


async def test_run_embedder_returns_at_once_when_embeddings_are_off(db: Database, settings: Settings) -> None:
    """With ``AGENT_MEMORY_EMBEDDINGS=false`` there is no model and no worker: recall stays lexical."""
    off = settings.model_copy(update={"embeddings": False})
    runtime = Runtime(db=db, settings=off, identify=local_identity(off))
    ready = anyio.Event()
    with anyio.fail_after(5):
        await run_embedder(runtime, ready)
    assert ready.is_set()
    assert runtime.semantic is None


async def test_reindex_embeddings_backfills_and_replaces_vectors_of_another_model(client: Client, db: Database) -> None:
    """``embed_chunks`` (``reindex --embeddings``) embeds every chunk without a vector, in batches, reporting
    progress; vectors recorded as another model's are dropped and made again, never compared."""
    await call(client, "remember", events=[{"text": f"Fact {i}: the cache holds {i} entries."} for i in range(7)])
    seen: list[tuple[str, int, int]] = []
    report = await embed_chunks(db, Embedder(), tenant="local", batch=3, progress=lambda *p: seen.append(p))
    assert report.chunks == 7
    assert seen[0] == ("local", 0, 7)
    assert seen[-1] == ("local", 7, 7)
    assert await vector_counts(db) == (7, 0)
    async with db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE chunks SET embedding_model = 'an-older-model' WHERE ctid IN (SELECT ctid FROM chunks LIMIT 2)"
        )
    assert (await vector_counts(db))[0] == 5
    again = await embed_chunks(db, Embedder(), tenant="local", batch=3, progress=lambda *p: None)
    assert again.chunks == 2
    assert await vector_counts(db) == (7, 0)


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux keeps a nice value per thread")
async def test_the_background_embedder_yields_the_cpu_to_calls() -> None:
    """The model of the background embedder runs in a thread of lower priority (what it raises reaches the caller);
    the threads that serve calls (this one) keep theirs."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    thread = BackgroundThread()
    try:
        niceness = await thread.run(partial(os.getpriority, os.PRIO_PROCESS, 0))
        with pytest.raises(ZeroDivisionError):
            await thread.run(partial(divmod, 1, 0))
    finally:
        await thread.close()
    assert niceness == max(before, BACKGROUND_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


async def test_closing_the_background_thread_stops_the_model_run_in_progress() -> None:
    """A stopping server does not wait for the batch being embedded: the run in progress is stopped (its caller
    gets ``Stopped``) and the thread has ended when ``close`` returns."""
    embedder = Embedder().load()
    thread = BackgroundThread()
    texts = [f"Long note {i}: " + "the migration plan changes the billing schema " * 20 for i in range(2_000)]
    async with anyio.create_task_group() as group:
        outcome: list[BaseException] = []

        async def embed() -> None:
            try:
                await thread.run(partial(embedder.embed, texts, thread.stop))
            except Stopped as exc:
                outcome.append(exc)

        group.start_soon(embed)
        await anyio.sleep(0.5)
        await thread.close()
    assert len(outcome) == 1
    assert not thread.alive
