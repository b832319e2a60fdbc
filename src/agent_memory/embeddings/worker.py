"""The background embedder: embeds new chunks in batches, off the write path.

``remember`` stores chunks without vectors and returns as fast as before; it NOTIFYs ``agent_memory_changes``
(``tenant/session``) as it always did. The embedder LISTENs there (any process's writes), keeps the tenants
with new chunks in a bounded queue (a tenant already waiting is not queued twice; when the queue is full the
tenant is left for the next sweep), and for each embeds its chunks that have no vector, ``batch`` at a time:
one transaction per batch, the batch's rows locked with ``SKIP LOCKED`` so that the embedders of several
replicas never embed the same chunk twice. The model runs in a thread of its own, never on the event loop, and
(on Linux) at a lower CPU priority (``BACKGROUND_NICENESS``): calls being served come first, and the embedder
takes what CPU they leave. Vectors lag behind a burst of writes and catch up when it passes; ``recall`` says in
provenance how many candidates had no vector yet.

It survives everything: a failed batch is logged and the tenant retried at the next notification or sweep; a
lost LISTEN connection is reopened with backoff. A sweep at start (and every ``sweep_every`` seconds) queues
every tenant (or only ``tenant_filter``, for a stdio server), so chunks written while no embedder ran are found.

``embed_tenant`` is also what ``agent-memory reindex --embeddings`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import structlog

from agent_memory.embeddings.model import DIMENSION, MODEL_ID, Embedder, Stop, Stopped, in_context
from agent_memory.errors import AgentMemoryError
from agent_memory.store.database import CHANGES_CHANNEL, Database

if TYPE_CHECKING:
    from agent_memory.embeddings.model import Vectors
    from agent_memory.runtime import Runtime

log = structlog.get_logger(__name__)

SWEEP_EVERY: Final = 300.0
RETRY_FIRST: Final = 0.5
RETRY_MOST: Final = 30.0
# nice value of the background embedder's thread: against a request's threads (nice 0) it gets about a tenth of
# their share of a busy CPU, and all of an idle one. The embedding of a query runs at normal priority.
BACKGROUND_NICENESS: Final = 10
CLOSE_SECONDS: Final = 5.0  # waited at most for the embedder's thread to end when the server stops

T = TypeVar("T")

Progress = Callable[[str, int, int], None]


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority to ``BACKGROUND_NICENESS`` unless it is lower already (Linux, where
    a nice value is per thread; elsewhere nothing)."""
    if sys.platform == "linux":
        me = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, me, max(os.getpriority(os.PRIO_PROCESS, me), BACKGROUND_NICENESS))
        except OSError as exc:  # a sandbox that forbids it: the embedder still works, at normal priority
            log.info("the embedder runs at normal priority", reason=str(exc))


class BackgroundThread:
    """The thread, at a lower CPU priority, that runs the model for the background embedder. ``close`` stops the
    model run in progress (``Stop``) and waits for the thread to end, so that a stopping server neither waits for a
    batch (at a low priority on a busy machine that can take many seconds; its vectors were not stored, and the
    next start embeds those chunks) nor leaves the model running while the interpreter shuts down."""

    def __init__(self) -> None:
        self.stop = Stop()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="embedder")
        self._thread.start()

    async def run(self, call: Callable[[], T]) -> T:
        """The result of ``call()``, run in the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(call, loop, future))
        return await future

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def close(self) -> None:
        """Stop the run in progress, if any, and wait (shielded from cancellation) for the thread to end."""
        self.stop.set()
        self._jobs.put(None)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join, CLOSE_SECONDS)

    def _serve(self) -> None:
        _lower_priority()
        while (job := self._jobs.get()) is not None:
            try:
                outcome: tuple[Any, BaseException | None] = (job.call(), None)
            except BaseException as exc:  # handed to the awaiting task, which raises it
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                job.loop.call_soon_threadsafe(_settle, job.future, *outcome)


@dataclass(frozen=True)
class _Job:
    call: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _embed(embedder: Embedder, texts: Sequence[str], thread: BackgroundThread | None) -> Vectors:
    """Run the model on ``texts`` in ``thread``, or in a worker thread of the event loop without one."""
    if thread is None:
        return await anyio.to_thread.run_sync(embedder.embed, texts)
    return await thread.run(partial(embedder.embed, texts, thread.stop))


async def embed_tenant(
    db: Database,
    embedder: Embedder,
    tenant: str,
    *,
    batch: int = 32,
    progress: Progress | None = None,
    thread: BackgroundThread | None = None,
) -> int:
    """Embed every chunk of ``tenant`` that has no vector, ``batch`` per transaction, the model running in
    ``thread`` (default: a worker thread); returns how many. With ``progress``, vectors of another model are
    dropped first (so that they are made again) and progress is reported as ``(tenant, done, total)``."""
    total = 0
    if progress is not None:
        async with db.transaction(tenant) as tx:
            await tx.forget_other_embeddings(MODEL_ID, DIMENSION)
            total = await tx.count_chunks_to_embed(MODEL_ID, DIMENSION)
        progress(tenant, 0, total)
    done = 0
    while True:
        async with db.transaction(tenant) as tx:
            todo = await tx.chunks_to_embed(batch)
            if not todo:
                return done
            # each chunk alone, then the chunks that have a context in it (without one, both vectors are the same)
            texts = [chunk.text for chunk in todo]
            contextual = [i for i, chunk in enumerate(todo) if chunk.context]
            texts += [in_context(todo[i].text, todo[i].context) for i in contextual]
            vectors = (await _embed(embedder, texts, thread)).tolist()
            in_contexts = dict(zip(contextual, vectors[len(todo) :], strict=True))
            made = [
                (chunk.id, vectors[i], in_contexts[i], chunk.context_id)
                if i in in_contexts
                else (chunk.id, vectors[i], vectors[i], None)
                for i, chunk in enumerate(todo)
            ]
            await tx.set_embeddings(made, MODEL_ID, DIMENSION)
        done += len(todo)
        if progress is not None:
            progress(tenant, done, max(total, done))


class BackgroundEmbedder:
    """The queue of tenants with new chunks, and the loop that embeds them."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        batch: int = 32,
        queue: int = 1000,
        tenant_filter: str | None = None,
        sweep_every: float = SWEEP_EVERY,
        on_embedded: Callable[[str, int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.batch = batch
        self.tenant_filter = tenant_filter
        self.sweep_every = sweep_every
        self._queue: deque[str] = deque()
        self._capacity = queue
        self._waiting: set[str] = set()
        self._wakeup = anyio.Event()
        self._on_embedded = on_embedded  # told (tenant, chunks) after each pass that embedded something
        self._on_queue = on_queue or (lambda _depth: None)  # told the queue's depth whenever it changes

    def wake(self, tenant: str) -> bool:
        """Queue ``tenant`` (never blocks); False when the queue is full (the next sweep finds it)."""
        if self.tenant_filter is not None and tenant != self.tenant_filter:
            return True
        if tenant in self._waiting:
            return True
        if len(self._queue) >= self._capacity:
            log.warning("the embedding queue is full; the tenant waits for the next sweep", tenant=tenant)
            return False
        self._queue.append(tenant)
        self._waiting.add(tenant)
        self._on_queue(len(self._queue))
        self._wakeup.set()
        return True

    async def run(self, ready: anyio.Event | None = None) -> None:
        """Load the model, listen, sweep, and embed until cancelled; sets ``ready`` once listening."""
        await anyio.to_thread.run_sync(self.embedder.load)
        thread = BackgroundThread()
        try:
            async with anyio.create_task_group() as group:
                listening = anyio.Event()
                group.start_soon(self._listen, listening)
                await listening.wait()
                group.start_soon(self._sweep)
                if ready is not None:
                    ready.set()
                await self._work(thread)
        finally:
            await thread.close()

    async def _work(self, thread: BackgroundThread) -> None:
        while True:
            while not self._queue:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
            tenant = self._queue.popleft()
            self._waiting.discard(tenant)
            self._on_queue(len(self._queue))
            try:
                count = await embed_tenant(self.db, self.embedder, tenant, batch=self.batch, thread=thread)
            except Stopped:  # the server is stopping
                return
            except Exception:  # the boundary: one tenant's failure must not stop the embedder
                log.exception("embedding failed; the tenant is retried at its next write or the next sweep")
                await anyio.sleep(RETRY_FIRST)
                continue
            if count:
                log.debug("chunks embedded", tenant=tenant, chunks=count)
                if self._on_embedded is not None:
                    self._on_embedded(tenant, count)

    async def _sweep(self) -> None:
        while True:
            try:
                # shielded: a query cancelled half-way (a server stopping right after start) makes asyncpg
                # report a lost connection from a callback; this one takes milliseconds
                with anyio.CancelScope(shield=True):
                    tenants = [self.tenant_filter] if self.tenant_filter else await self.db.tenants()
            except AgentMemoryError as exc:  # a login that cannot see every tenant: rely on notifications
                log.info("the embedder cannot list tenants; it embeds on notifications only", reason=exc.message)
                return
            for tenant in tenants:
                self.wake(tenant)
            await anyio.sleep(self.sweep_every)

    async def _listen(self, listening: anyio.Event) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                async with self.db.listen(CHANGES_CHANNEL) as notifications:
                    listening.set()
                    delay = RETRY_FIRST
                    async for _, payload in notifications:
                        tenant = payload.partition("/")[0]
                        if tenant == "*":
                            await self._wake_all()
                        else:
                            self.wake(tenant)
            except AgentMemoryError as exc:
                log.warning("the embedder lost its LISTEN connection; retrying", reason=exc.message, retry_in=delay)
            listening.set()  # without LISTEN the sweeps still find new chunks
            await anyio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)

    async def _wake_all(self) -> None:
        try:
            tenants = [self.tenant_filter] if self.tenant_filter else await self.db.tenants()
        except AgentMemoryError:
            return
        for tenant in tenants:
            self.wake(tenant)


async def run_embedder(runtime: Runtime, ready: anyio.Event | None = None, *, tenant_filter: str | None = None) -> None:
    """The background embedder of ``runtime``, until cancelled (start it in the server's lifespan task group).
    Returns at once (after setting ``ready``) when embeddings are off."""
    semantic = runtime.semantic
    if semantic is None:
        if ready is not None:
            ready.set()
        return
    settings = runtime.settings
    worker = BackgroundEmbedder(
        runtime.db,
        semantic.embedder,
        batch=settings.embedding_batch,
        queue=settings.embedding_queue,
        tenant_filter=tenant_filter,
        on_embedded=lambda _tenant, chunks: runtime.metrics.embedded_chunks.inc(chunks),
        on_queue=runtime.metrics.embedding_queue.set,
    )
    await worker.run(ready)
