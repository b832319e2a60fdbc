"""Who may do what (RBAC): each role includes the ones before it.

| role | may |
|---|---|
| reader | recall, read resources |
| writer | + remember, handoff_packet |
| curator | + supersede_decision, write views |
| admin | + keys, export, forget |
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from agent_memory.caller import Caller
from agent_memory.errors import Forbidden

ROLES: Final = ("reader", "writer", "curator", "admin")
REQUIRED_ROLE: Final = MappingProxyType(
    {
        "recall": "reader",
        "read_resource": "reader",
        "remember": "writer",
        "handoff_packet": "writer",
        "supersede_decision": "curator",
        "set_view": "curator",
        "keys": "admin",
        "export": "admin",
        "forget": "admin",
    }
)


def highest_role(caller: Caller) -> str | None:
    """The caller's most powerful role, or None when it has none."""
    held = [role for role in ROLES if role in caller.roles]
    return held[-1] if held else None


def require(caller: Caller, action: str) -> None:
    """Raise ``Forbidden`` naming the role ``action`` needs unless the caller holds it (or a higher one)."""
    needed = REQUIRED_ROLE[action]
    highest = highest_role(caller)
    if highest is None or ROLES.index(highest) < ROLES.index(needed):
        has = f"has {highest}" if highest else "has no role"
        raise Forbidden(f"{action} needs the {needed} role (or higher); this caller {has}", needed=needed)
