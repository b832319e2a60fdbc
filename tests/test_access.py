"""Roles (RBAC) and the audit trail."""

from __future__ import annotations

import pytest
from mcp import Client

from agent_memory.access import REQUIRED_ROLE, ROLES, require
from agent_memory.caller import Caller
from agent_memory.errors import Forbidden
from agent_memory.store.database import Database
from tests.helpers import call, call_error


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(REQUIRED_ROLE))
def test_each_role_includes_the_ones_before_it(role: str, action: str) -> None:
    """A role may do what its own and every lesser role may; a refusal names the role needed."""
    caller = Caller(tenant="t", agent_id="a", roles=frozenset({role}))
    allowed = ROLES.index(role) >= ROLES.index(REQUIRED_ROLE[action])
    if allowed:
        require(caller, action)
    else:
        with pytest.raises(Forbidden, match=f"needs the {REQUIRED_ROLE[action]} role"):
            require(caller, action)


def test_no_role_may_do_nothing() -> None:
    """A token without roles is refused even reading, and told so."""
    with pytest.raises(Forbidden, match="has no role"):
        require(Caller(tenant="t", agent_id="a", roles=frozenset()), "recall")


@pytest.mark.anyio
async def test_every_call_and_read_is_audited(client: Client, db: Database) -> None:
    """Successful and failed tool calls and resource reads each leave an audit row with the principal, the
    action, the ids involved, the outcome, the latency and a request id."""
    event = (await call(client, "remember", text="audited fact"))["events"][0]["id"]
    await call(client, "recall", query="audited")
    await call_error(client, "remember", text="x", refs=["evt_01M8G6QWH5DRT8XFQ9KRMF7238"])
    await client.read_resource(f"memory://events/{event}")
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM audit_log ORDER BY id")
    assert [(r["action"], r["success"]) for r in rows] == [
        ("remember", True),
        ("recall", True),
        ("remember", False),
        ("read_resource", True),
    ]
    assert rows[0]["resource_ids"] == [event]
    assert rows[3]["resource_ids"] == [event]
    assert rows[2]["detail"]["error"] == "not_found"
    assert all(r["principal"] == "local:agent-a" and r["tenant_id"] == "local" for r in rows)
    assert all(r["latency_ms"] >= 0 and len(r["request_id"]) == 32 for r in rows)
