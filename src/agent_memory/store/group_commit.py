"""Audit rows written by group commit: the rows of calls that end while a batch is being written are written
together next, in one transaction and one commit whatever their tenants (``Database.append_audit``).

A call appends its row. If no batch is being written, it writes every row queued by then (its own among them) and
wakes the calls whose rows those were; otherwise it waits for that batch to end and looks again. One row alone is
written at once, as before; under load many share a commit. Each row is committed before ``append`` returns.

A batch that fails is written again row by row, so that a row the database refuses fails only its own call. A
batch is written even if the call writing it is cancelled (others wait for their rows), but for ``TIMEOUT``
seconds at most: a database that does not answer fails the rows, and the next batch tries again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

import anyio
import anyio.lowlevel

from agent_memory.errors import Unavailable
from agent_memory.store.rows import AuditEntry

Write = Callable[[Mapping[str, Sequence[AuditEntry]]], Awaitable[None]]


class _Queued:
    """A row waiting for its batch; compared by identity (two calls may append equal rows)."""

    __slots__ = ("done", "entry", "error", "tenant")

    def __init__(self, tenant: str, entry: AuditEntry) -> None:
        self.tenant = tenant
        self.entry = entry
        self.done = False
        self.error: Exception | None = None


class AuditTrail:
    """The audit rows of one database, written by ``write`` (tenant → rows, one transaction) in batches of at most
    ``MAX_BATCH`` rows."""

    MAX_BATCH: Final = 500
    TIMEOUT: Final = 30.0

    def __init__(self, write: Write) -> None:
        self._write = write
        self._queue: list[_Queued] = []
        self._writing = False
        self._written: anyio.Event | None = None  # set when the batch being written ends

    async def append(self, tenant: str, entry: AuditEntry) -> None:
        """Queue ``entry`` for ``tenant`` and return once it is committed; raise what failed it."""
        queued = _Queued(tenant, entry)
        self._queue.append(queued)
        try:
            while not queued.done:
                if self._writing:
                    if self._written is None:
                        self._written = anyio.Event()
                    await self._written.wait()
                    continue
                await self._write_batch()
        finally:
            if not queued.done and queued in self._queue:  # cancelled before its batch began
                self._queue.remove(queued)
        if queued.error is not None:
            raise queued.error

    async def _write_batch(self) -> None:
        self._writing = True
        try:
            await anyio.lowlevel.checkpoint()  # rows of calls ending at this moment join the batch
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + self.TIMEOUT) as scope:
                await self._write_all(batch)
            if scope.cancelled_caught:
                for queued in batch:
                    if not queued.done:
                        queued.error = Unavailable(f"the audit row was not written within {self.TIMEOUT:g} s")
            for queued in batch:
                queued.done = True
        finally:
            self._writing = False
            written, self._written = self._written, None
            if written is not None:
                written.set()

    async def _write_all(self, batch: list[_Queued]) -> None:
        if len(batch) > 1:
            by_tenant: dict[str, list[AuditEntry]] = {}
            for queued in batch:
                by_tenant.setdefault(queued.tenant, []).append(queued.entry)
            with contextlib.suppress(Exception):  # one row may have failed them all: each alone, below
                await self._write(by_tenant)
                for queued in batch:
                    queued.done = True
                return
        for queued in batch:
            await self._write_one(queued)

    async def _write_one(self, queued: _Queued) -> None:
        try:
            await self._write({queued.tenant: [queued.entry]})
        except Exception as exc:  # handed to the call whose row it was, to raise (record() logs it)
            queued.error = exc
        queued.done = True
