"""Slow queries are logged with their name and duration, and reported to listeners (the server's metric)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from agent_memory.store.database import Database

pytestmark = pytest.mark.anyio


async def test_queries_over_the_threshold_are_logged_and_reported(db: Database) -> None:
    seen: list[str] = []
    db.slow_queries.listeners.append(lambda name, _seconds: seen.append(name))
    db.slow_queries.threshold = 0.0
    with capture_logs() as logs:
        async with db.transaction("acme") as tx:
            await tx.ensure_tenant()
    assert seen == ["ensure_tenant"]
    assert [(e["event"], e["query"]) for e in logs if e["event"] == "slow query"] == [("slow query", "ensure_tenant")]

    db.slow_queries.threshold = 60.0
    async with db.transaction("acme") as tx:
        await tx.count_events()
    assert seen == ["ensure_tenant"]
