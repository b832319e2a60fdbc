"""Forgetting: delete what a tenant asks to have forgotten, everywhere it is kept, and say what went.

A scope names what to forget: events by id, a whole session, a subject (text found anywhere in an event,
case-insensitively) or everything of the tenant. Forgetting an event takes with it its duplicates (they hold
the same text), its chunks and their vectors, its artifact and the decision it recorded (the decision chain is
spliced around it; a forgotten head leaves its predecessor in force again); tasks it changed are replayed from
the updates that remain. A session also takes its handoff packets; a subject takes the packets that mention it
and is blanked out of the views; everything takes the views and the API keys too. All of it happens in one
transaction, which first waits for the tenant's writes in flight and holds new ones until it ends (so that no
write adds a copy of what is being forgotten, linked to an event it deletes); every process drops its hot set,
and the audit log gets a tombstone with the counts (never the subject, nor a hash of it: only its length).

Retention (``purge_expired``, run by ``agent-memory retention purge``) forgets a tenant's events older than its
``retention_days`` the same way, keeping pinned events, those recording a decision still in force, updates of
tasks still open and the originals of duplicates recorded since. It does not hold the tenant's writes: a write
that links a new duplicate to an old event being purged keeps its own, recent copy of the text, as it should.

What this cannot reach: database backups and, until PostgreSQL vacuums them, dead row versions on disk.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from agent_memory import refs as references
from agent_memory import tasks
from agent_memory.caller import Caller
from agent_memory.context.hotset import HotCache
from agent_memory.errors import InvalidInput
from agent_memory.store.database import Database, Tx
from agent_memory.text import estimate_tokens

FORGOTTEN = "[forgotten]"
MAX_EVENT_IDS = 1000
MIN_SUBJECT_CHARS = 3

Scope = Literal["events", "session", "subject", "everything", "before"]


class ForgetReceipt(BaseModel):
    """What was forgotten: the scope and the rows each table lost."""

    scope: Scope
    events: int = 0
    chunks: int = 0
    artifacts: int = 0
    decisions: int = 0
    tasks_removed: int = 0
    tasks_rebuilt: int = 0
    handoffs: int = 0
    views_changed: int = 0
    api_keys: int = 0
    vectors_remade: int = 0  # vectors of other chunks that held the forgotten text as context, to be made again


def scope_of(
    *, event_ids: list[str] | None, session_id: str | None, subject: str | None, everything: bool
) -> tuple[Scope, str | list[str] | None]:
    """The one scope given, checked; ``InvalidInput`` naming the fields when none or several are."""
    given = [
        name
        for name, value in (
            ("event_ids", event_ids),
            ("session_id", session_id),
            ("subject", subject),
            ("everything", everything or None),
        )
        if value is not None
    ]
    if len(given) != 1:
        problem = "none given" if not given else f"several given ({', '.join(given)})"
        raise InvalidInput("scope", problem, "exactly one of event_ids, session_id, subject, everything=true")
    if event_ids is not None:
        if not 0 < len(event_ids) <= MAX_EVENT_IDS:
            raise InvalidInput("event_ids", f"{len(event_ids)} ids", f"1 to {MAX_EVENT_IDS} event ids")
        references.check_shapes("event_ids", event_ids, {"event"})
        return "events", list(dict.fromkeys(event_ids))
    if session_id is not None:
        if not session_id.strip():
            raise InvalidInput("session_id", "is empty", "a session id")
        return "session", session_id
    if subject is not None:
        if len(subject.strip()) < MIN_SUBJECT_CHARS:
            raise InvalidInput("subject", f"{subject!r} is too short", f"at least {MIN_SUBJECT_CHARS} characters")
        return "subject", subject.strip()
    return "everything", None


async def forget(
    db: Database,
    caller: Caller,
    scope: Scope,
    value: str | list[str] | datetime | None,
    *,
    hot: HotCache | None = None,
) -> ForgetReceipt:
    """Forget ``scope`` (``value`` as ``scope_of`` returned it) in the caller's tenant; see the module docstring."""
    receipt = ForgetReceipt(scope=scope)
    async with db.transaction(caller.tenant) as tx:
        if scope != "before":  # retention forgets only old events: writes need not wait for it
            await tx.lock_out_writers()
        await tx.ensure_tenant()
        targets = await _targets(tx, scope, value)
        counts = await _forget_events(tx, targets) if targets else {}
        if scope in {"session", "subject"}:
            assert isinstance(value, str)
            counts["handoffs"] = await tx.delete_handoffs(scope, value)
        if scope == "subject":
            assert isinstance(value, str)
            counts["views_changed"] = await _blank_views(tx, value, caller)
        if scope == "everything":
            counts["handoffs"] = await tx.delete_handoffs("all")
            removed = await tx.delete_everything_else()
            counts["views_changed"], counts["api_keys"] = removed["views"], removed["api_keys"]
        receipt = receipt.model_copy(update=counts)
        await tx.audit(
            principal=caller.principal or caller.agent_id,
            action="forget",
            resource_ids=targets[:100],
            success=True,
            latency_ms=None,
            request_id=caller.request_id,
            detail={"tombstone": True, **receipt.model_dump(), **_described(scope, value)},
        )
        await tx.notify_change("*")
    db.forget_reach(caller.tenant)  # every other server on the notice (server.app)
    if hot is not None:
        hot.invalidate(caller.tenant, "*")
    return receipt


async def _targets(tx: Tx, scope: Scope, value: str | list[str] | datetime | None) -> list[str]:
    """The events to forget: those the scope names, and every duplicate of them."""
    if scope == "before":  # retention: no duplicates added (one recorded since keeps its original)
        assert isinstance(value, datetime)
        return await tx.events_before(value)
    if scope == "events":
        assert isinstance(value, list)
        found = await tx.existing_events(value)
    elif scope == "everything":
        found = await tx.events_to_forget("all")
    else:
        assert isinstance(value, str)
        found = await tx.events_to_forget(scope, value)
    return found + await tx.duplicates_of(found) if found else []


async def _forget_events(tx: Tx, ids: list[str]) -> dict[str, int]:
    """Delete the events and what derives from them; splice decision chains; replay the tasks they changed."""
    task_ids = await tx.tasks_of_events(ids)
    links = {decision: (before, after) for decision, before, after in await tx.decisions_of_events(ids)}

    def survivor(decision: str | None, side: int) -> str | None:
        """The nearest decision on ``side`` (0: before, 1: after) that is not being forgotten."""
        while decision in links:
            decision = links[decision][side]
        return decision

    counts = await tx.delete_events(ids)  # first: a successor may then take over its forgotten link
    for before, after in {(survivor(b, 0), survivor(a, 1)) for b, a in links.values()}:
        await tx.relink_decisions(before, after)
    removed, updates = await tx.replace_tasks(task_ids) if task_ids else (0, [])
    rebuilt = tasks.replay(updates)
    for task in rebuilt:
        await tx.insert_task(task)
    return {**counts, "tasks_removed": max(0, removed - len(rebuilt)), "tasks_rebuilt": len(rebuilt)}


async def _blank_views(tx: Tx, subject: str, caller: Caller) -> int:
    """Replace the subject in every view (case-insensitively) with ``[forgotten]``; how many views changed."""
    pattern = re.compile(re.escape(subject), re.IGNORECASE)
    changed = 0
    for view in await tx.list_views():
        body, found = pattern.subn(FORGOTTEN, view.body)
        if found:
            await tx.set_view(view.name, body, estimate_tokens(body) if body else 1, f"forget:{caller.principal}")
            changed += 1
    return changed


async def purge_expired(db: Database, caller: Caller, *, hot: HotCache | None = None) -> ForgetReceipt | None:
    """Forget the caller's tenant's events older than its retention (None when it has none): pinned events,
    those recording a decision still in force and originals of a duplicate recorded since are kept."""
    async with db.transaction(caller.tenant) as tx:
        days = await tx.retention()
    if days is None:
        return None
    return await forget(db, caller, "before", datetime.now(UTC) - timedelta(days=days), hot=hot)


def _described(scope: Scope, value: str | list[str] | datetime | None) -> dict[str, object]:
    """How the tombstone names the scope: a session id as it is, a subject only by its length."""
    if scope == "subject" and isinstance(value, str):
        return {"subject_chars": len(value)}  # nothing that could be turned back into the subject
    if scope == "session":
        return {"session_id": value}
    if scope == "before" and isinstance(value, datetime):
        return {"before": value.isoformat()}
    return {}
