"""Everything logged during a call carries its request id, tenant, principal and action."""

from __future__ import annotations

import pytest
import structlog
from mcp import Client

from agent_memory.store.database import Database
from tests.helpers import call

pytestmark = pytest.mark.anyio


async def test_logs_of_a_call_carry_its_identity(client: Client, db: Database) -> None:
    bound: list[dict[str, object]] = []
    db.slow_queries.threshold = 0.0  # every query "slow": a log line from inside the call
    db.slow_queries.listeners.append(lambda _name, _seconds: bound.append(structlog.contextvars.get_contextvars()))
    await call(client, "remember", text="hello there")
    inside = [context for context in bound if "request_id" in context]
    assert inside
    assert {(c["tenant"], c["principal"], c["action"]) for c in inside} == {("local", "local:agent-a", "remember")}
    assert len({c["request_id"] for c in inside}) == 1
