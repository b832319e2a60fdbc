"""Graceful shutdown of a real `agent-memory serve --http` process, with calls in flight when SIGTERM arrives.

"In flight" is made certain, not raced for: the test holds a lock on the events table from its own connection,
so every `remember` blocks inside the database; it sends SIGTERM only once PostgreSQL shows each of those
calls waiting on a lock, and releases the lock only once the server has stopped accepting connections.
The server's sessions are told apart in pg_stat_activity by the ``application_name`` in its database URL.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import httpx2
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from agent_memory.server.http import GRACE_SECONDS
from agent_memory.tokens import mint
from tests.server.processes import HttpServer, http_server, tail

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SECRET = "shutdown-test-secret-with-32-bytes-or-more"
CALLS = 4
SERVER_APP_NAME = "agent-memory-under-test"
FILLER = "The migration plan, step by step, with every table and index it touches. " * 800  # ~60 KB


def _named(dsn: str, application_name: str) -> str:
    """``dsn`` with an ``application_name`` that the server's sessions then carry in pg_stat_activity."""
    parts = urlsplit(dsn)
    query = "&".join(part for part in (parts.query, f"application_name={application_name}") if part)
    return urlunsplit(parts._replace(query=query))


async def _server_sessions(conn: asyncpg.Connection, *, waiting_on_a_lock: bool = False) -> int:
    """The server's sessions open on this database (only those waiting on a lock, if asked)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1"
        " AND (NOT $2 OR wait_event_type = 'Lock')",
        SERVER_APP_NAME,
        waiting_on_a_lock,
    )
    return count


async def _until(condition: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll ``check`` until it is true; fail naming ``condition`` after ``within`` seconds (an AssertionError,
    not ``pytest.fail``, which anyio's runner mishandles when it leaves a task group)."""
    try:
        with anyio.fail_after(within):
            while True:
                if await check():
                    return
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within:g} s: {condition}") from None


async def _exit_code_within(process: Process, seconds: float, log: Path) -> int:
    try:
        with anyio.fail_after(seconds):
            return await process.wait()
    except TimeoutError:
        raise AssertionError(f"still running {seconds:g} s after SIGTERM:\n{tail(log)}") from None


async def _refuses_connections(base_url: str) -> bool:
    async with httpx2.AsyncClient(trust_env=False) as http:
        try:
            await http.get(f"{base_url}/healthz")
        except httpx2.ConnectError:
            return True
    return False


@asynccontextmanager
async def _events_locked(dsn: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Hold ``LOCK TABLE events IN EXCLUSIVE MODE`` (reads go on, every insert waits); yields the release."""
    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        yield transaction.rollback
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()  # releases the lock if the test did not


@asynccontextmanager
async def _clients(server: HttpServer, count: int) -> AsyncIterator[list[Client]]:
    """``count`` MCP clients over streamable HTTP, each with its own connections and agent, each having made
    one call already (so the tenant exists and the client knows the tools' output schemas)."""
    async with AsyncExitStack() as stack:
        clients = []
        for i in range(count):
            token = mint(SECRET, tenant="acme", agent=f"agent-{i}", roles=["writer"])
            headers = {"Authorization": f"Bearer {token}"}
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60, trust_env=False))
            client = await stack.enter_async_context(Client(streamable_http_client(server.mcp_url, http_client=http)))
            assert not (await client.call_tool("remember", {"text": f"agent-{i} is here"})).is_error
            clients.append(client)
        yield clients


async def test_sigterm_lets_calls_in_flight_finish_then_exits_cleanly(database_url: str, tmp_path: Path) -> None:
    """SIGTERM with four `remember` calls blocked in the database: the server stops accepting connections at
    once, yet every call in flight completes successfully and is stored with its audit row; the process then
    exits 0 within its grace period, with no session of its own left and none abandoned (its pool was closed)."""
    log = tmp_path / "server.log"
    observer = await asyncpg.connect(database_url)
    try:
        async with (
            http_server(_named(database_url, SERVER_APP_NAME), log=log, jwt_secret=SECRET) as server,
            _clients(server, CALLS) as clients,
        ):
            results: dict[int, CallToolResult] = {}

            async def remember(i: int) -> None:
                arguments = {"text": f"in flight {i}: {FILLER}", "session_id": "shutdown"}
                results[i] = await clients[i].call_tool("remember", arguments)

            async def all_blocked() -> bool:
                return await _server_sessions(observer, waiting_on_a_lock=True) == CALLS

            async with _events_locked(database_url) as release, anyio.create_task_group() as calls:
                for i in range(CALLS):
                    calls.start_soon(remember, i)
                await _until(f"{CALLS} calls waiting on the events lock", all_blocked, 20)
                server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                await _until("new connections refused after SIGTERM", lambda: _refuses_connections(server.base_url), 5)
                assert server.process.returncode is None, f"exited with calls in flight:\n{tail(log)}"
                assert results == {}, "a call finished while the events table was locked"
                await release()

            failed = {i: result.content for i, result in results.items() if result.is_error}
            assert not failed, f"calls in flight failed: {failed}\nserver log:\n{tail(log)}"
            code = await _exit_code_within(server.process, GRACE_SECONDS - (time.monotonic() - signalled), log)
            assert code == 0, f"exit code {code}; server log:\n{tail(log)}"

        event_ids = [result.structured_content["events"][0]["id"] for result in results.values()]  # type: ignore[index]
        stored = await observer.fetchval("SELECT count(*) FROM events WHERE id = ANY($1::text[])", event_ids)
        assert stored == CALLS
        audited = await observer.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'remember' AND success AND resource_ids && $1::text[]",
            event_ids,
        )
        assert audited == CALLS, f"{CALLS - audited} calls in flight left no audit row:\n{tail(log)}"
        await _assert_pool_closed(observer, log)
    finally:
        await observer.close()


async def test_a_call_outlasting_the_grace_period_does_not_hold_the_process(database_url: str, tmp_path: Path) -> None:
    """SIGTERM while a call stays blocked in the database longer than the grace period: the process still exits
    0 soon after the grace period, the call cut off stored nothing, and the pool was closed."""
    log = tmp_path / "server.log"
    observer = await asyncpg.connect(database_url)
    try:
        async with (
            http_server(_named(database_url, SERVER_APP_NAME), log=log, jwt_secret=SECRET) as server,
            _clients(server, 1),  # registers the tenant
            _events_locked(database_url),
        ):
            outcome: list[Any] = []

            async def remember() -> None:
                # a bare JSON-RPC request: the MCP client's own tasks fail loudly when a server drops a call
                token = mint(SECRET, tenant="acme", agent="agent-0", roles=["writer"])
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2025-11-25",
                }
                call = {"name": "remember", "arguments": {"text": "cut off by the shutdown"}}
                request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}
                async with httpx2.AsyncClient(headers=headers, timeout=60, trust_env=False) as http:
                    try:
                        outcome.append(await http.post(server.mcp_url, json=request))
                    except httpx2.TransportError as exc:
                        outcome.append(exc)

            async def blocked() -> bool:
                return await _server_sessions(observer, waiting_on_a_lock=True) == 1

            async with anyio.create_task_group() as calls:
                calls.start_soon(remember)
                await _until("the call waiting on the events lock", blocked, 20)
                server.process.send_signal(signal.SIGTERM)
                code = await _exit_code_within(server.process, GRACE_SECONDS + 5, log)
            assert code == 0, f"exit code {code}; server log:\n{tail(log)}"

        stored = await observer.fetchval("SELECT count(*) FROM events WHERE text = 'cut off by the shutdown'")
        assert stored == 0, f"the call cut off was stored anyway; it answered {outcome}"
        await _assert_pool_closed(observer, log)
    finally:
        await observer.close()


async def _assert_pool_closed(observer: asyncpg.Connection, log: Path) -> None:
    """No session of the server is left, and none was dropped without a goodbye (what an unclosed pool leaves
    when the process exits: PostgreSQL counts it in ``sessions_abandoned``)."""

    async def no_sessions_left() -> bool:
        return await _server_sessions(observer) == 0

    await _until("the server's sessions gone from pg_stat_activity", no_sessions_left, 5)
    abandoned = await observer.fetchval(
        "SELECT sessions_abandoned FROM pg_stat_database WHERE datname = current_database()"
    )
    assert abandoned == 0, f"{abandoned} database sessions were dropped, not closed:\n{tail(log)}"
