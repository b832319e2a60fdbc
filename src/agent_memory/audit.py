"""The audit trail: every read and write, who did it, on what, how it went and how long it took.

Rows go to ``audit_log`` in a transaction of their own (a failed call is audited too, and its own
transaction has already rolled back), committed before the call answers. Calls that end while another's row is
being written have theirs written together next, in one transaction whatever their tenants (a group commit:
``store.group_commit``): under load a row costs a fraction of a transaction. Writing the audit row never fails
the call: a database error here is logged instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import structlog

from agent_memory.caller import Caller
from agent_memory.errors import AgentMemoryError, RateLimited
from agent_memory.metrics import Metrics
from agent_memory.store.database import Database
from agent_memory.store.rows import AuditEntry

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
        await db.audit_trail.append(caller.tenant, entry)
    except (AgentMemoryError, OSError) as exc:
        log.warning("audit row not written", action=action, tenant=caller.tenant, error=str(exc))


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
