"""Agents hand work to each other with packets, not transcripts.

A packet names the task, its constraints, the decisions that bind it, the files and open questions, and
the events it rests on. It is stored pending; the receiving agent's next ``recall`` is built from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from agent_memory import refs as references
from agent_memory.caller import Caller
from agent_memory.context.hotset import HotCache
from agent_memory.errors import InvalidInput
from agent_memory.ids import new_id
from agent_memory.models import HandoffOut
from agent_memory.redact import redact
from agent_memory.store.database import Database
from agent_memory.store.rows import HandoffRow
from agent_memory.text import estimate_tokens


def handoff_text(row: HandoffRow) -> str:
    """The packet as the receiving agent's context shows it."""
    lines = [f"Handoff from {row.from_agent}: {row.task}"]
    for label, values in (
        ("Constraints", row.constraints),
        ("Binding decisions", row.decision_ids),
        ("Required files", row.required_files),
        ("Open questions", row.open_questions),
    ):
        if values:
            lines.append(f"{label}: " + "; ".join(values))
    return "\n".join(lines)


def handoff_out(row: HandoffRow, redactions: Sequence[str] = ()) -> HandoffOut:
    """The public shape of a stored packet."""
    return HandoffOut.model_validate({**row.model_dump(), "redactions": sorted(set(redactions))})


async def create_handoff(
    db: Database,
    caller: Caller,
    *,
    to_agent: str,
    task: str,
    session_id: str,
    constraints: Sequence[str] = (),
    decision_ids: Sequence[str] = (),
    required_files: Sequence[str] = (),
    open_questions: Sequence[str] = (),
    refs: Sequence[str] = (),
    hot: HotCache | None = None,
) -> HandoffOut:
    """Store a pending packet from ``caller`` to ``to_agent``; every id it names must exist in the tenant."""
    if not task.strip():
        raise InvalidInput("task", "is empty", "a statement of the work being handed over")
    references.check_shapes("decision_ids", decision_ids, {"decision"})
    references.check_shapes("refs", refs)
    kinds: set[str] = set()

    def scrub(value: str) -> str:
        result = redact(value)
        kinds.update(result.kinds)
        return result.text

    async with db.transaction(caller.tenant, writes=True) as tx:
        await tx.ensure_tenant()
        statuses = await tx.decision_statuses(decision_ids)
        references.check_found("decision_ids", decision_ids, statuses, "decision")
        for position, ident in enumerate(decision_ids):
            status, successor = statuses[ident]
            if status != "active":
                field = f"decision_ids[{position}]"
                raise await references.superseded(tx, field, ident, successor, "name that one instead")
        references.check_found("refs", refs, await tx.existing_refs(refs))
        clean_task = scrub(task)
        clean_constraints = [scrub(c) for c in constraints]
        clean_questions = [scrub(q) for q in open_questions]
        clean_files = [scrub(f) for f in required_files]
        row = HandoffRow(
            id=new_id("handoff"),
            from_agent=caller.agent_id,
            to_agent=to_agent,
            session_id=session_id,
            task=clean_task,
            constraints=clean_constraints,
            decision_ids=list(dict.fromkeys(decision_ids)),
            required_files=clean_files,
            open_questions=clean_questions,
            refs=list(dict.fromkeys(refs)),
            token_est=1,
            created_at=datetime.now(UTC),
        )
        row = row.model_copy(update={"token_est": estimate_tokens(handoff_text(row))})
        await tx.insert_handoff(row)
        await tx.notify_change("*")
    if hot is not None:
        hot.invalidate(caller.tenant, "*")
    return handoff_out(row, sorted(kinds))
