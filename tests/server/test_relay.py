"""The change relay survives losing its LISTEN connection: it reconnects, and the hot set never stays stale."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client
from structlog.testing import capture_logs

from agent_memory import views
from agent_memory.context.assembly import END_OF_TIME
from agent_memory.runtime import Runtime, local_identity
from agent_memory.server.app import Backoff, build_server
from agent_memory.settings import Settings
from agent_memory.store.database import CHANGES_CHANNEL, VIEWS_CHANNEL, Database
from tests.helpers import call
from tests.store.test_listen import listening_backends

pytestmark = pytest.mark.anyio

FAST_RECONNECT = Backoff(first=0.05, most=0.2)
REESTABLISHED = "LISTEN connection re-established; the hot set starts empty"
RETRYING = "cannot LISTEN yet"


class Logged:
    """A structlog processor (for ``capture_logs``) that lets a test wait, without polling, until an event has
    been logged a number of times."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._waiters: list[tuple[str, int, anyio.Event]] = []

    def __call__(self, _logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        self.counts[event["event"]] += 1
        for name, times, seen in self._waiters:
            if self.counts[name] >= times:
                seen.set()
        return event

    async def seen(self, name: str, times: int = 1, within: float = 20) -> None:
        seen = anyio.Event()
        self._waiters.append((name, times, seen))
        if self.counts[name] >= times:
            seen.set()
        with anyio.fail_after(within):
            await seen.wait()


async def _terminate(db: Database, pid: int) -> None:
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)


async def _continue(client: Client) -> dict[str, Any]:
    return await call(client, "recall", intent="continue", session_id="s1")


def _rules(bundle: dict[str, Any]) -> str:
    return " ".join(item["text"] for s in bundle["sections"] if s["name"] == "rules" for item in s["items"])


@asynccontextmanager
async def _served(db: Database, settings: Settings) -> AsyncIterator[tuple[Client, Runtime]]:
    runtime = Runtime(db=db, settings=settings, identify=local_identity(settings))
    server = build_server(runtime, tenant_filter=settings.tenant, reconnect=FAST_RECONNECT)
    async with Client(server, raise_exceptions=True) as client:
        yield client, runtime


async def test_a_killed_listen_connection_is_replaced_and_changes_still_arrive(
    db: Database, settings: Settings
) -> None:
    """The LISTEN backend is terminated (as a database restart or a proxy would): a warning is logged, the
    relay reconnects and logs it, the hot set starts empty (and tenants are asked for again), and a view changed
    afterwards by another connection still reaches the hot set (the next "continue" recall shows it) and the view's
    listeners."""
    await views.set_view(db, "local", "rules", "Old rule: cite sources.", "test")
    logged = Logged()
    with capture_logs([logged]) as logs:
        async with _served(db, settings) as (client, runtime):
            await _continue(client)
            assert (await _continue(client))["provenance"]["path"] == "fast"
            (old,) = await listening_backends(db)
            await _terminate(db, old)
            await logged.seen(REESTABLISHED)
            assert not runtime.hot.suspended
            assert "local" not in db._known_tenants  # a restore's notice may have gone unheard meanwhile
            assert old not in await listening_backends(db)
            after = await _continue(client)
            assert after["provenance"]["path"] != "fast", "the hot set outlived a gap in which changes were missed"
            assert (await _continue(client))["provenance"]["path"] == "fast"

            async with client.listen(resource_subscriptions=["memory://rules"]) as subscription:
                await views.set_view(db, "local", "rules", "New rule: be brief.", "test")
                with anyio.fail_after(10):
                    event = await subscription.__anext__()
            assert event.uri == "memory://rules"  # type: ignore[union-attr]
            assert "New rule: be brief." in _rules(await _continue(client))
    lost = [e for e in logs if e["event"].startswith("LISTEN connection lost")]
    back = [e for e in logs if e["event"] == REESTABLISHED]
    assert [e["log_level"] for e in lost] == ["warning"]
    assert "server closed the connection" in lost[0]["reason"]
    assert [e["log_level"] for e in back] == ["info"]


async def test_while_the_database_refuses_connections_the_relay_retries_and_the_server_serves(
    server_dsn: str, db: Database, settings: Settings
) -> None:
    """While the database refuses new connections the relay keeps retrying with backoff (a warning per
    attempt), the hot set is bypassed and calls are still answered; once it accepts again the relay is back and
    the hot set caches again."""
    async with db.pool.acquire() as conn:
        name = await conn.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(server_dsn)
    logged = Logged()
    try:
        with capture_logs([logged]) as logs:
            async with _served(db, settings) as (client, runtime):
                await _continue(client)
                (old,) = await listening_backends(db)
                await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
                await _terminate(db, old)
                await logged.seen(RETRYING, times=2)
                assert runtime.hot.suspended
                for _ in range(2):
                    assert (await _continue(client))["provenance"]["path"] != "fast"

                await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
                await logged.seen(REESTABLISHED)
                await _continue(client)
                assert (await _continue(client))["provenance"]["path"] == "fast"
    finally:
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        await admin.close()
    retries = [e for e in logs if e["event"] == RETRYING]
    assert all(e["log_level"] == "warning" for e in retries)
    waits = [e["retry_in"] for e in retries]
    assert waits == sorted(waits)
    assert max(waits) <= FAST_RECONNECT.most


async def test_after_a_restore_notice_a_write_creates_its_tenant_again(db: Database, settings: Settings) -> None:
    """The server stops asking for a tenant's row once it has seen it; `restore` may take that row away, and says
    so (everything changed). The next write then creates the row again instead of failing for the lack of it."""
    async with _served(db, settings) as (client, _):
        await call(client, "remember", text="Before the restore.")
        assert "local" in db._known_tenants
        async with db.pool.acquire() as conn:
            await conn.execute("DELETE FROM tenants WHERE id = 'local'")  # as a restore of an older backup would
        async with client.listen(resource_subscriptions=["memory://rules"]) as subscription:
            await db.notify_everything_changed()
            async with db.pool.acquire() as conn:  # a view's notice, relayed after the first one
                await conn.execute("SELECT pg_notify($1, 'local/rules')", VIEWS_CHANNEL)
            with anyio.fail_after(10):
                await subscription.__anext__()
        assert "local" not in db._known_tenants
        await call(client, "remember", text="After the restore.")
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = 'local'") == 1


async def test_a_forget_notice_has_the_tenants_reach_counted_again(db: Database, settings: Settings) -> None:
    """A forget in another process says everything of its tenant changed: this server drops where that tenant's
    full-text search began to reach (ReachMemo), and keeps another tenant's."""
    key, other = ("local", END_OF_TIME, 20_000, 100_000), ("globex", END_OF_TIME, 20_000, 100_000)
    async with _served(db, settings) as (client, _):
        db._reach.put(key, datetime(2026, 1, 1, tzinfo=UTC))
        db._reach.put(other, datetime(2026, 1, 1, tzinfo=UTC))
        async with client.listen(resource_subscriptions=["memory://rules"]) as subscription:
            async with db.pool.acquire() as conn:  # the forget's notice, then a view's, relayed after it
                await conn.execute("SELECT pg_notify($1, 'local/*')", CHANGES_CHANNEL)
                await conn.execute("SELECT pg_notify($1, 'local/rules')", VIEWS_CHANNEL)
            with anyio.fail_after(10):
                await subscription.__anext__()
        assert db._reach.get(key) is None
        assert db._reach.get(other) is not None
