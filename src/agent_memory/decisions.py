"""Decisions are first-class: superseded, never silently overwritten.

``supersede`` records the new decision as an event (ground truth), adds it to the ledger as the active
head of the chain and marks the old one superseded, linked both ways, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from agent_memory import refs as references
from agent_memory.caller import Caller
from agent_memory.context.hotset import HotCache
from agent_memory.errors import InvalidInput, NotFound
from agent_memory.ids import kind_of
from agent_memory.ingest import Limits, store_events
from agent_memory.models import DecisionFields, DecisionOut, EventIn, SupersedeResult
from agent_memory.store.database import Database
from agent_memory.store.rows import DecisionRow
from agent_memory.vocabulary import Channel


def decision_out(row: DecisionRow) -> DecisionOut:
    """The public shape of a ledger row."""
    return DecisionOut.model_validate(row.model_dump())


async def supersede(
    db: Database,
    caller: Caller,
    decision_id: str,
    text: str,
    fields: DecisionFields,
    *,
    refs: Sequence[str] = (),
    session_id: str | None = None,
    channel: Channel | None = None,
    at: datetime | None = None,
    limits: Limits,
    hot: HotCache | None = None,
) -> SupersedeResult:
    """Replace active decision ``decision_id`` with a new one whose refs include the old decision."""
    if kind_of(decision_id) != "decision":
        raise InvalidInput("decision_id", f"{decision_id!r} is not a decision id", "dec_… as returned by remember")
    async with db.transaction(caller.tenant, writes=True) as tx:
        old = await tx.get_decision(decision_id, for_update=True)
        if old is None:
            raise NotFound("decision", decision_id, field="decision_id")
        if old.status != "active":
            advice = "supersede that one instead"
            raise await references.superseded(tx, "decision_id", decision_id, old.superseded_by, advice)
        item = EventIn(
            text=text,
            kind="decision",
            session_id=session_id or old.session_id,
            channel=channel or old.channel,
            refs=list(dict.fromkeys([*refs, decision_id])),
            at=at,
            importance=old.importance,
            pinned=old.pinned,
            sensitivity="high" if old.sensitivity == "high" else None,  # never less private than before
            decision=fields.model_copy(update={"scope": fields.scope or old.scope}),
        )
        receipt = (await store_events(tx, caller, [item], limits, supersedes=decision_id))[0]
        assert receipt.decision_id is not None  # a decision event always projects a ledger row
        await tx.mark_superseded(decision_id, receipt.decision_id, item.at or datetime.now(UTC))
        new = await tx.get_decision(receipt.decision_id)
        superseded = await tx.get_decision(decision_id)
        assert new is not None
        assert superseded is not None
        await tx.notify_change("*")
    if hot is not None:
        hot.invalidate(caller.tenant, "*")
    return SupersedeResult(
        decision=decision_out(new),
        superseded=decision_out(superseded),
        event_id=receipt.id,
        redactions=receipt.redactions,
    )
