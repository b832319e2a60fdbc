"""The audit trail: every read and write, who did it, on what, how it went and how long it took.

Rows go to ``audit_log`` in a transaction of their own (a failed call is audited too, and its own
transaction has already rolled back), committed before the call answers. Calls that end while another's row is
being written have theirs written together next, in one transaction whatever their tenants (a group commit,
``AuditTrail``): under load a row costs a fraction of a transaction. Writing the audit row never fails the call:
a database error here is logged instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from weakref import WeakKeyDictionary

import anyio
import anyio.lowlevel
import structlog

from agent_memory.caller import Caller
from agent_memory.errors import AgentMemoryError, RateLimited
from agent_memory.metrics import Metrics
from agent_memory.store.database import AuditEntry, Database

log = structlog.get_logger(__name__)
MAX_RESOURCE_IDS = 100


async def record(
    db: Database,
    caller: Caller,
    action: str,
    *,
    resource_ids: Iterable[str] = (),
    success: bool,
    latency_ms: float,
    request_id: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row for ``caller``'s ``action``, committed when this returns."""
    entry = AuditEntry(
        principal=caller.principal or caller.agent_id,
        action=action,
        resource_ids=list(resource_ids)[:MAX_RESOURCE_IDS],
        success=success,
        latency_ms=round(latency_ms, 3),
        request_id=request_id,
        detail={"agent": caller.agent_id, **(detail or {})},
    )
    try:
        await _trail(db).append(caller.tenant, entry)
    except (AgentMemoryError, OSError) as exc:
        log.warning("audit row not written", action=action, tenant=caller.tenant, error=str(exc))


@dataclass(slots=True)
class _Queued:
    tenant: str
    entry: AuditEntry
    done: bool = False
    error: Exception | None = None


class AuditTrail:
    """Audit rows of one database, written by group commit. A call appends its row; if no batch is being written,
    it writes every row queued by then (its own among them, whatever their tenants) in one transaction, and wakes
    the calls whose rows those were; otherwise it waits for that batch to end and tries again. One row alone is
    written at once, as before; under load, many share one transaction and one commit (``MAX_BATCH`` at most).
    A batch that fails fails each of its rows (``record`` logs them)."""

    MAX_BATCH: Final = 500

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: list[_Queued] = []
        self._writing = False
        self._written: anyio.Event | None = None  # set when the batch being written ends

    async def append(self, tenant: str, entry: AuditEntry) -> None:
        """Queue ``entry`` for ``tenant`` and return once it is committed; raise what failed its batch."""
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
            by_tenant: dict[str, list[AuditEntry]] = {}
            for queued in batch:
                by_tenant.setdefault(queued.tenant, []).append(queued.entry)
            with anyio.CancelScope(shield=True):  # the rows taken are written, or fail, whoever waits for them
                try:
                    await self._db.append_audit(by_tenant)
                except Exception as exc:  # handed to each call whose row it was, to raise (or not) as before
                    for queued in batch:
                        queued.error = exc
                for queued in batch:
                    queued.done = True
        finally:
            self._writing = False
            written, self._written = self._written, None
            if written is not None:
                written.set()


_TRAILS: WeakKeyDictionary[Database, AuditTrail] = WeakKeyDictionary()


def _trail(db: Database) -> AuditTrail:
    trail = _TRAILS.get(db)
    if trail is None:
        trail = _TRAILS[db] = AuditTrail(db)
    return trail


async def finish(
    db: Database,
    metrics: Metrics,
    caller: Caller,
    action: str,
    *,
    started: float,
    request_id: str,
    resource_ids: Iterable[str],
    error: str | None,
) -> None:
    """Close one tool call or resource read: count it, time it, and append its audit row.
    ``started`` is the call's ``time.perf_counter()``; ``error`` its error code, or None when it succeeded."""
    elapsed = time.perf_counter() - started
    metrics.requests.labels(action=action, status=error or "ok").inc()
    metrics.latency.labels(action=action, status=error or "ok").observe(elapsed)
    if error == RateLimited.code:
        metrics.rate_limited.labels(scope="call").inc()
    await record(
        db,
        caller,
        action,
        resource_ids=resource_ids,
        success=error is None,
        latency_ms=elapsed * 1000,
        request_id=request_id,
        detail={"error": error} if error else None,
    )


def ids_in(structured: Any) -> list[str]:
    """The record ids a result names at its top: ``id``, ``events[].id``, ``decision.id`` ..."""
    found: list[str] = []
    if isinstance(structured, dict):
        for key in ("id", "event_id"):
            if isinstance(structured.get(key), str):
                found.append(structured[key])
        for key in ("decision", "superseded"):
            if isinstance(structured.get(key), dict) and isinstance(structured[key].get("id"), str):
                found.append(structured[key]["id"])
        for event in structured.get("events", []) if isinstance(structured.get("events"), list) else []:
            if isinstance(event, dict) and isinstance(event.get("id"), str):
                found.append(event["id"])
    return found
