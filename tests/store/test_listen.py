"""``Database.listen``: notifications over a dedicated connection, and a loss of that connection made visible."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from agent_memory.errors import Unavailable
from agent_memory.store.database import CHANGES_CHANNEL, Database

pytestmark = pytest.mark.anyio


async def listening_backends(db: Database) -> list[int]:
    """Process ids of the backends of this database that sit in LISTEN (the relay's connection)."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
    return [row["pid"] for row in rows]


class Proxy:
    """A TCP proxy on loopback in front of the test PostgreSQL that can stop forwarding without closing
    anything: to its clients the server then looks alive but never answers (a connection dropped silently)."""

    def __init__(self, upstream: Callable[[], Awaitable[ByteStream]]) -> None:
        self._upstream = upstream
        self._flowing = anyio.Event()
        self._flowing.set()
        self.port = 0

    def stall(self) -> None:
        self._flowing = anyio.Event()

    async def _pump(self, source: ByteStream, target: ByteStream) -> None:
        try:
            async for chunk in source:
                await self._flowing.wait()
                await target.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            await target.aclose()

    async def _serve_one(self, client: ByteStream) -> None:
        async with client, await self._upstream() as server, anyio.create_task_group() as group:
            group.start_soon(self._pump, client, server)
            group.start_soon(self._pump, server, client)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(SocketAttribute.local_port)  # noqa: S610 - anyio's typed attributes
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, self._serve_one)
            yield self
            group.cancel_scope.cancel()


def proxied(dsn: str) -> tuple[str, Callable[[], Awaitable[ByteStream]]]:
    """A DSN template (``{port}`` left open) reaching ``dsn``'s database through a proxy, and how the proxy
    reaches the real server (its TCP address or its Unix socket)."""
    parts = urlsplit(dsn)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host, port = query.get("host", parts.hostname or "127.0.0.1"), int(query.get("port", parts.port or 5432))

    async def upstream() -> ByteStream:
        if host.startswith("/"):
            return await anyio.connect_unix(f"{host}/.s.PGSQL.{port}")
        return await anyio.connect_tcp(host, port)

    return f"postgresql://{parts.username}@127.0.0.1:{{port}}{parts.path}", upstream


async def test_notifications_arrive_as_channel_and_payload(db: Database) -> None:
    """What another connection NOTIFYs on a channel listened to arrives as (channel, payload)."""
    async with db.listen(CHANGES_CHANNEL) as notifications:
        async with db.pool.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, 'acme/s1')", CHANGES_CHANNEL)
        with anyio.fail_after(10):
            assert await notifications.receive() == (CHANGES_CHANNEL, "acme/s1")


async def test_a_terminated_connection_ends_the_stream_and_says_so(db: Database) -> None:
    """The server ending the listening backend (as a restart does) ends the stream at once, and leaving the
    block raises Unavailable naming the cause: the caller knows notifications were missed."""
    with pytest.raises(Unavailable, match="LISTEN connection was lost: the server closed"):  # noqa: PT012
        async with db.listen(CHANGES_CHANNEL, check_every=3600) as notifications:
            (pid,) = await listening_backends(db)
            async with db.pool.acquire() as conn:
                assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            with anyio.fail_after(10):
                async for _ in notifications:
                    pytest.fail("no notification was sent")


async def test_a_connection_that_stops_answering_is_found_by_the_check(database_url: str, db: Database) -> None:
    """A connection that silently stops carrying anything (no close, no error) is found by the periodic check
    and reported as lost, instead of listening forever to nothing."""
    template, upstream = proxied(database_url)
    async with Proxy(upstream).running() as proxy:
        through_proxy = Database(db.pool, template.format(port=proxy.port))
        with pytest.raises(Unavailable, match="did not answer a check"):  # noqa: PT012
            async with through_proxy.listen(CHANGES_CHANNEL, check_every=0.2) as notifications:
                proxy.stall()
                with anyio.fail_after(10):
                    async for _ in notifications:
                        pytest.fail("no notification was sent")


async def test_a_server_that_cannot_be_reached_is_unavailable(db: Database) -> None:
    """Opening the listening connection to nowhere is a clear Unavailable, not an asyncpg error."""
    nowhere = Database(db.pool, "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(Unavailable, match="cannot open a connection to LISTEN"):
        async with nowhere.listen(CHANGES_CHANNEL):
            pytest.fail("connected to nowhere")


async def test_leaving_normally_raises_nothing(db: Database) -> None:
    """A reader that is done simply leaves: no error, although its connection is closed on the way out."""
    async with db.listen(CHANGES_CHANNEL):
        assert len(await listening_backends(db)) == 1
