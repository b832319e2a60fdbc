"""Checks of the ids a write names (``refs``, ``decision_ids``): their shape, that they exist in the caller's
tenant, and that a decision named as current is not superseded. Each failure names the field and position."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agent_memory.errors import Conflict, InvalidInput, NotFound
from agent_memory.ids import PREFIXES, kind_of
from agent_memory.store.database import Tx

REF_KINDS = frozenset({"event", "decision"})


def check_shapes(field: str, ids: Sequence[str], kinds: Collection[str] = REF_KINDS) -> None:
    """``InvalidInput`` naming ``field[i]`` for the first id that is not of one of ``kinds``."""
    for position, ident in enumerate(ids):
        if kind_of(ident) not in kinds:
            ordered = sorted(kinds, reverse=True)  # event before decision
            names = " or ".join(ordered)
            article = "an" if names[0] in "aeiou" else "a"
            shapes = " or ".join(f"{PREFIXES[kind]}_…" for kind in ordered)
            raise InvalidInput(f"{field}[{position}]", f"{ident!r} is not {article} {names} id", shapes)


def check_found(field: str, ids: Sequence[str], found: Collection[str], kind: str = "event or decision") -> None:
    """``NotFound`` naming ``field[i]`` for the first id missing from ``found`` (what the tenant holds)."""
    for position, ident in enumerate(ids):
        if ident not in found:
            raise NotFound(kind, ident, field=f"{field}[{position}]")


async def superseded(tx: Tx, field: str, decision_id: str, successor: str | None, advice: str) -> Conflict:
    """The conflict of naming a superseded decision: who superseded it and the current head of its chain."""
    head = await tx.decision_chain_head(decision_id)
    msg = f"{field}: {decision_id} is superseded by {successor}; the current head of its chain is {head}: {advice}"
    return Conflict(msg, decision_id=decision_id, superseded_by=successor, head=head)
