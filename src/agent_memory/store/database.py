"""The asyncpg storage layer: a pool, and tenant-bound transactions that run named queries.

``Database.transaction(tenant)`` yields a ``Tx`` whose every method is scoped to that tenant; callers never
see asyncpg. asyncpg failures are translated into the error taxonomy of ``agent_memory.errors``.

Tenants are kept apart twice. Every query filters on its tenant, and row-level security (forced, on every
tenant table: see the end of ``sql/schema.sql``) admits only the rows of the tenant set for the transaction.
The pool's connections log in as the configured user, which migrates and owns the schema (and is a superuser
on the embedded server); both would bypass row-level security, so every tenant transaction first switches to
the role ``agent_memory_app`` and sets its tenant, each with ``SET LOCAL``: both end with the transaction.
The few maintenance methods that must see every tenant (``tenants``, ``tables_containing``, ``copy_rows``)
run outside a tenant transaction as the login user, and refuse when it does not bypass row-level security
rather than see nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import anyio
import asyncpg
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from agent_memory.errors import AgentMemoryError, Conflict, Forbidden, InvalidInput, Retryable, Unavailable
from agent_memory.store.group_commit import AuditTrail
from agent_memory.store.migrate import applied_versions, latest_version, migrate
from agent_memory.store.queries import QUERIES
from agent_memory.store.rows import (
    ApiKeyRow,
    ArtifactRow,
    AuditEntry,
    AuditRow,
    Candidate,
    ChunkRow,
    DecisionRow,
    EventRow,
    HandoffRow,
    TaskRow,
    ToEmbed,
    ViewRow,
    to_row,
)

log = structlog.get_logger(__name__)

APP_ROLE = "agent_memory_app"  # created by the migrations; see the module docstring
VIEWS_CHANNEL = "agent_memory_views"
CHANGES_CHANNEL = "agent_memory_changes"
EVERYTHING_CHANGED = "*/*"  # the CHANGES_CHANNEL payload of notify_everything_changed (no tenant, no table)
WRITE_LOCK_TIMEOUT: Final = "30s"  # the longest a write waits for a lock (a forget in progress, say)


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode("utf-8")  # jsonb's binary format: version 1, then the text


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # binary, so that COPY (which always speaks binary) can carry jsonb too
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A connection of the pool that knows whether it must be reset when released. A tenant transaction that
    ended (``Database.transaction``) leaves nothing behind: its role, tenant, settings and advisory locks are all
    the transaction's own (``SET LOCAL``, ``pg_advisory_xact_lock``). So after one the pool skips asyncpg's reset
    query (a round trip: ``RESET ALL``, ``UNLISTEN *``, ``pg_advisory_unlock_all()``, ``CLOSE ALL``); after
    anything else (migrations, maintenance, a transaction that failed) it still runs it."""

    __slots__ = ("_clean",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clean = False

    def mark_clean(self) -> None:
        """Only a tenant transaction, now ended, used the connection since it was acquired."""
        self._clean = True

    async def reset_for_pool(self) -> None:
        """``create_pool(reset=...)``: asyncpg has already rolled back any open transaction."""
        clean, self._clean = self._clean, False
        if not clean:
            await self.execute(self.get_reset_query())


PORTABLE = ("events", "artifacts", "chunks", "decisions", "tasks", "handoffs", "views")  # export order

TABLES = (
    "tenants",
    "events",
    "chunks",
    "artifacts",
    "decisions",
    "tasks",
    "handoffs",
    "views",
    "audit_log",
    "api_keys",
    "request_signatures",
)


def _event_values(event: EventRow) -> tuple[Any, ...]:
    """The parameters of ``insert_event`` after the tenant, in order."""
    return (
        event.id,
        event.session_id,
        event.agent_id,
        event.kind,
        event.channel,
        event.actor,
        event.sensitivity,
        event.text,
        event.text_hash,
        event.token_est,
        event.tags,
        event.refs,
        event.importance,
        event.pinned,
        event.metadata,
        event.structured,
        event.redactions,
        event.duplicate_of,
        event.artifact_id,
        event.original_chars,
        event.truncated,
        event.ts,
    )


def _similarity_pair(row: asyncpg.Record) -> tuple[float, float | None]:
    """(similarity, context similarity or ``None``) of a row of ``semantic_neighbours`` or ``similarities``."""
    context = row["context_similarity"]
    return float(row["similarity"]), None if context is None else float(context)


def _rowcount(status: str) -> int:
    """The rows a command touched, from its status (``DELETE 3``, ``INSERT 0 5``, ``UPDATE 1``)."""
    return int(status.rsplit(" ", 1)[-1])


async def _close_quietly(conn: asyncpg.Connection) -> None:
    """Close ``conn``, or drop it when it cannot be closed politely (a dead or unresponsive connection)."""
    try:
        await conn.close(timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


class ReachMemo:
    """Where each large tenant's full-text search began to reach (query ``evidence_pool``, column
    ``lexical_since``), for ``SECONDS`` after it was counted: finding it means reading the tenant's newest 20,000
    chunks (3–4 ms), and it moves only as fast as the tenant writes, while the search reaches back five times
    the time those chunks span. Kept for a large tenant only, whose corpus size is the sample's and does not move;
    a smaller one is counted on every recall. A forget (its notice: ``Database.forget_reach``) and a restore
    (``forget_known_tenants``) have it counted again; a server that missed the notice counts again within
    ``SECONDS``. Keyed by tenant, horizon, sample and reach; ``MOST`` keys at most."""

    SECONDS: Final = 60.0
    MOST: Final = 10_000

    def __init__(self) -> None:
        self._since: dict[tuple[str, datetime, int, int], tuple[datetime, float]] = {}

    def get(self, key: tuple[str, datetime, int, int]) -> datetime | None:
        found = self._since.get(key)
        if found is None or time.monotonic() - found[1] > self.SECONDS:
            return None
        return found[0]

    def put(self, key: tuple[str, datetime, int, int], since: datetime) -> None:
        if len(self._since) >= self.MOST:
            self._since.clear()
        self._since[key] = (since, time.monotonic())

    def forget(self, tenant: str) -> None:
        for key in [k for k in self._since if k[0] == tenant]:
            del self._since[key]

    def clear(self) -> None:
        self._since.clear()


@dataclass
class SlowQueries:
    """Named queries slower than ``threshold`` seconds are logged (a warning with the name and duration) and
    reported to each of ``listeners`` (e.g. a metric)."""

    threshold: float = 0.2
    listeners: list[Callable[[str, float], None]] = field(default_factory=list)

    def observe(self, name: str, seconds: float) -> None:
        if seconds >= self.threshold:
            log.warning("slow query", query=name, ms=round(seconds * 1000, 1))
            for listener in self.listeners:
                listener(name, seconds)


class Database:
    """A connection pool to one PostgreSQL database holding agent-memory's schema."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn
        self.slow_queries = SlowQueries()
        # tenants whose row this process has seen committed: a write need not ask for them again (Tx.ensure_tenant).
        # Tenants are never deleted (agent_memory_app may not); `restore` replaces them all, and says so with the
        # NOTIFY on which every server calls forget_known_tenants (as it does when its LISTEN connection is back,
        # having perhaps missed that NOTIFY).
        self._known_tenants: set[str] = set()
        # where a large tenant's full-text search began to reach (Tx.evidence_pool), as recently counted
        self._reach = ReachMemo()
        self.audit_trail = AuditTrail(self.append_audit)  # audit rows, written by group commit

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 20, run_migrations: bool = True) -> Database:
        """Open a pool (and apply pending migrations); a clear ``Unavailable`` when the server cannot be reached."""
        try:
            if run_migrations:
                conn = await asyncpg.connect(dsn)
                try:
                    await migrate(conn)
                finally:
                    await conn.close()
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min(min_size, max_size),
                max_size=max_size,
                init=_init_connection,
                reset=PooledConnection.reset_for_pool,
                connection_class=PooledConnection,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            msg = f"cannot reach the database: {exc.__class__.__name__}: {exc}"
            raise Unavailable(msg) from exc
        return cls(pool, dsn)

    async def close(self, grace: float = 10.0) -> None:
        """Close every connection, waiting up to ``grace`` seconds for calls in flight; then drop the rest."""
        with anyio.move_on_after(grace) as waited:
            await self._pool.close()
        if waited.cancelled_caught:
            log.warning("connections still busy when the pool closed; terminating them", grace=grace)
            self._pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        """The underlying pool. Its connections act as the login user, with no tenant: for migrations, health
        checks and tests that inspect the whole store, never for a tenant's queries (use ``transaction``)."""
        return self._pool

    @asynccontextmanager
    async def _every_tenant(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for maintenance across tenants, as the login user. Row-level security is forced,
        so only a login that bypasses it (a superuser, or BYPASSRLS) sees the rows: refuse any other."""
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(QUERIES["sees_every_tenant"]):
                user = await conn.fetchval("SELECT current_user")
                msg = (
                    f"maintenance across tenants needs a database login that bypasses row-level security "
                    f"(a superuser, or a role with BYPASSRLS); {user!r} is neither"
                )
                raise Forbidden(msg)
            yield conn

    async def server_report(self) -> tuple[str, bool, list[str]]:
        """(the server's version, whether pgvector is installed, the search functions whose owner row-level
        security holds): query ``server_report``."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(QUERIES["server_report"])
        return str(row["server_version"]), bool(row["pgvector"]), list(row["unindexed_search"])

    async def schema_status(self) -> tuple[list[int], int]:
        """(applied versions, the version this package expects)."""
        async with self._pool.acquire() as conn:
            return await applied_versions(conn), latest_version()

    async def tables_containing(self, needle: str) -> list[str]:
        """The tables (of every tenant) where any column of any row contains ``needle``: any value, and any value
        inside a JSON or array column, as it is (the text of a whole row would escape quotes and backslashes)."""
        found = []
        async with self._every_tenant() as conn:
            for table in TABLES:
                hit = await conn.fetchval(QUERIES["table_contains"].replace("{table}", table), needle)
                if hit:
                    found.append(table)
        return found

    def forget_reach(self, tenant: str) -> None:
        """Count ``tenant``'s newest chunks again at its next recall (after a forget: ``ReachMemo``)."""
        self._reach.forget(tenant)

    def forget_known_tenants(self) -> None:
        """Ask for every tenant's row again, and count every tenant's newest chunks again (after a restore
        replaced them)."""
        self._known_tenants.clear()
        self._reach.clear()

    async def notify_everything_changed(self) -> None:
        """Every server process drops its whole hot set (a NOTIFY: no tenant, no table)."""
        async with self._pool.acquire() as conn:
            await conn.execute(QUERIES["notify_everything_changed"])

    async def copy_rows(self, tenant: str, events: Sequence[EventRow], chunks: Sequence[ChunkRow]) -> None:
        """Bulk-load already prepared events and their chunks with COPY (seeding history, imports).

        PostgreSQL refuses COPY into a table whose row-level security applies, so this runs as the login user
        and needs one that bypasses it, like the rest of the maintenance."""
        event_columns = [name for name in EventRow.model_fields if name != "recorded_at"]
        chunk_columns = list(ChunkRow.model_fields)
        async with self._every_tenant() as conn, conn.transaction():
            await conn.execute(QUERIES["ensure_tenant"], tenant)
            await conn.copy_records_to_table(
                "events",
                columns=["tenant_id", *event_columns],
                records=[(tenant, *(getattr(e, c) for c in event_columns)) for e in events],
            )
            await conn.copy_records_to_table(
                "chunks",
                columns=["tenant_id", *chunk_columns],
                records=[(tenant, *(getattr(c, name) for name in chunk_columns)) for c in chunks],
            )

    async def tenants(self) -> list[str]:
        """Every tenant id (maintenance commands walk them)."""
        async with self._every_tenant() as conn:
            return [row["id"] for row in await conn.fetch("SELECT id FROM tenants ORDER BY id")]

    async def api_key(self, key_id: str) -> ApiKeyRow | None:
        """The key ``key_id`` of whichever tenant holds it, noting its use; None when no tenant does.

        Its tenant is not known yet, so this is the one transaction that does not enter a tenant: row-level
        security admits exactly the row of the key it names (``enter_key_lookup``), and nothing else."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(QUERIES["enter_key_lookup"], key_id)
                row = await conn.fetchrow(QUERIES["find_api_key"], key_id)
                if row is not None and row["revoked_at"] is None:
                    await conn.execute(QUERIES["touch_api_key"], key_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise Unavailable(f"cannot check the API key: {exc.__class__.__name__}: {exc}") from exc
        return None if row is None else to_row(ApiKeyRow, row)

    async def purge_audit(self, before: datetime) -> int:
        """Delete every tenant's audit rows older than ``before``; returns how many went."""
        async with self._every_tenant() as conn:
            status: str = await conn.execute(QUERIES["purge_audit"], before)
        return _rowcount(status)

    async def tenants_with_retention(self) -> list[tuple[str, int]]:
        """(tenant, days) of every tenant with a retention (maintenance: needs a login that sees every tenant)."""
        async with self._every_tenant() as conn:
            return [(row["id"], row["retention_days"]) for row in await conn.fetch(QUERIES["tenants_with_retention"])]

    async def ping(self) -> None:
        """Round-trip to the database, raising ``Unavailable`` when it does not answer."""
        try:
            async with self._pool.acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            msg = f"database unreachable: {exc}"
            raise Unavailable(msg) from exc

    @asynccontextmanager
    async def listen(
        self, *channels: str, buffer: int = 1000, check_every: float = 30.0
    ) -> AsyncIterator[MemoryObjectReceiveStream[tuple[str, str]]]:
        """``(channel, payload)`` pairs NOTIFYed on ``channels``, over one dedicated connection (so the pool
        keeps its size). When the reader falls ``buffer`` behind, newer ones are dropped with a warning.

        A lost connection ends the stream, and leaving the block then raises ``Unavailable`` saying why: the
        server closed it (a restart, ``pg_terminate_backend``), or it did not answer the ``SELECT 1`` sent every
        ``check_every`` seconds within as long (a connection dropped without a word). What was NOTIFYed while
        it was gone is lost: open a new one and assume everything changed. ``Unavailable`` also when the
        connection cannot be opened."""
        send, receive = anyio.create_memory_object_stream[tuple[str, str]](buffer)
        lost: list[str] = []

        def on_notify(_conn: object, _pid: int, channel: str, payload: str) -> None:
            try:
                send.send_nowait((channel, payload))
            except anyio.WouldBlock:
                log.warning("notifications are backing up; dropping one", channel=channel, payload=payload)
            except anyio.ClosedResourceError:
                pass  # the connection was just found lost: the reader is told by the end of the stream

        def on_lost(reason: str) -> None:
            if not lost:
                lost.append(reason)
            send.close()

        try:
            conn = await self._listening_connection(channels, on_notify)
        except BaseException:  # unreachable, or cancelled while connecting: the streams go with it
            send.close()
            receive.close()
            raise
        conn.add_termination_listener(lambda _conn: on_lost("the server closed the connection"))

        async def check() -> None:
            while not lost:
                await anyio.sleep(check_every)
                try:
                    await conn.fetchval("SELECT 1", timeout=check_every)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    on_lost(f"the connection did not answer a check ({exc.__class__.__name__}: {exc})")

        try:
            async with send, receive, anyio.create_task_group() as group:
                group.start_soon(check)
                yield receive
                group.cancel_scope.cancel()
        finally:
            gone = bool(lost)
            lost.append("")  # from here on, closing is ours: not a loss
            if gone:
                conn.terminate()  # nothing to say goodbye to
            else:
                with anyio.CancelScope(shield=True):
                    await _close_quietly(conn)
        if lost[0]:
            raise Unavailable(f"the LISTEN connection was lost: {lost[0]}")

    async def _listening_connection(
        self, channels: Sequence[str], on_notify: Callable[[object, int, str, str], None]
    ) -> asyncpg.Connection:
        """A new connection, as ``agent_memory_app``, listening on ``channels``; ``Unavailable`` if it cannot be.

        Shielded: asyncpg does not take cancellation half-way through opening a connection well (it reports a
        lost connection from a callback); a cancellation waits the few milliseconds this takes and is delivered
        by the caller's next await, whose cleanup closes the connection."""
        with anyio.CancelScope(shield=True):
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise Unavailable(f"cannot open a connection to LISTEN: {exc.__class__.__name__}: {exc}") from exc
            try:
                await conn.execute(f"SET ROLE {APP_ROLE}")  # listening needs no privilege: hold none
                for channel in channels:
                    await conn.add_listener(channel, on_notify)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                await _close_quietly(conn)
                raise Unavailable(f"cannot LISTEN: {exc.__class__.__name__}: {exc}") from exc
        return conn

    async def append_audit(self, entries: Mapping[str, Sequence[AuditEntry]]) -> None:
        """Append the audit rows of several tenants (tenant → its rows, in order) in one transaction, one commit
        (``group_commit.AuditTrail``). Each tenant's rows are inserted as that tenant (query ``enter_tenant`` again
        for each: row-level security checks them), after its row if it has none; tenants in sorted order, so that
        two processes creating the same new tenants' rows take their locks in the same order."""
        tenants = sorted(entries)
        if not tenants:
            return
        async with self.transaction(tenants[0]) as tx:
            for tenant in tenants:
                if tenant != tenants[0]:
                    await tx._conn.execute(QUERIES["enter_tenant"], tenant)
                as_tenant = Tx(tx._conn, tenant, self.slow_queries, self._known_tenants, self._reach)
                await as_tenant.ensure_tenant()
                await as_tenant.audit_many(entries[tenant])

    @asynccontextmanager
    async def transaction(self, tenant: str, *, snapshot: bool = False, writes: bool = False) -> AsyncIterator[Tx]:
        """One transaction scoped to ``tenant``, as ``agent_memory_app`` under row-level security for ``tenant``:
        everything in it is written, or nothing is. ``snapshot``: read-only, every query seeing the same
        moment (repeatable read), for reads that span many queries (an export). ``writes``: it writes what a
        forget may delete (events, decisions, handoffs, views), so it waits for a forget in progress and a forget
        waits for it (query ``enter_tenant_to_write``); it waits at most ``WRITE_LOCK_TIMEOUT`` for any lock."""
        isolation = "repeatable_read" if snapshot else None
        try:
            async with self._pool.acquire() as conn:
                async with conn.transaction(isolation=isolation, readonly=snapshot):
                    if writes:
                        await conn.execute(QUERIES["enter_tenant_to_write"], tenant, WRITE_LOCK_TIMEOUT)
                    else:
                        await conn.execute(QUERIES["enter_tenant"], tenant)
                    yield Tx(conn, tenant, self.slow_queries, self._known_tenants, self._reach, writes=writes)
                conn.mark_clean()  # committed: nothing of it outlives the transaction
        except AgentMemoryError:
            raise
        except asyncpg.InsufficientPrivilegeError as exc:
            # a row of another tenant refused by row-level security (a query that lost its tenant filter),
            # or a privilege agent_memory_app lacks (a GRANT missing from the migrations): a bug either way
            log.error("the database refused a query of a tenant transaction", tenant=tenant, error=str(exc))
            raise Forbidden(f"refused by the database: {exc}") from exc
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"conflicting write: {exc.detail or exc}") from exc
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(exc.constraint_name or "value", f"rejected by the database: {exc}") from exc
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            raise Retryable(
                f"the database aborted this write to resolve a conflict with another; retry ({exc})"
            ) from exc
        except asyncpg.LockNotAvailableError as exc:
            raise Retryable(
                f"the tenant was busy for {WRITE_LOCK_TIMEOUT} (a forget in progress, or writes of the same texts);"
                " retry"
            ) from exc
        except (asyncpg.DataError, asyncpg.ProgramLimitExceededError) as exc:
            raise InvalidInput("value", f"rejected by the database: {exc}") from exc
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            msg = f"database unavailable: {exc}"
            raise Unavailable(msg) from exc
        except asyncpg.PostgresError as exc:
            log.error("unexpected database error", tenant=tenant, error=repr(exc))
            raise Unavailable(f"database error ({exc.__class__.__name__}); retry later") from exc


class Tx:
    """A transaction bound to one tenant. Every query it runs is filtered by that tenant (and row-level security
    would hide any other tenant's rows if it were not)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        slow: SlowQueries | None = None,
        known_tenants: set[str] | None = None,
        reach: ReachMemo | None = None,
        *,
        writes: bool = False,
    ) -> None:
        self._conn = conn
        self.tenant = tenant
        self.writes = writes  # begun as a write (Database.transaction): a forget waits for it
        self._slow = slow or SlowQueries(threshold=float("inf"))
        self._known_tenants = known_tenants if known_tenants is not None else set()
        self._reach = reach if reach is not None else ReachMemo()
        self._created_tenant = False

    async def _execute(self, name: str, *args: Any) -> str:
        started = time.perf_counter()
        result: str = await self._conn.execute(QUERIES[name], self.tenant, *args)
        self._slow.observe(name, time.perf_counter() - started)
        return result

    async def _fetch(self, name: str, *args: Any) -> list[Any]:
        started = time.perf_counter()
        rows = list(await self._conn.fetch(QUERIES[name], self.tenant, *args))
        self._slow.observe(name, time.perf_counter() - started)
        return rows

    async def _fetchrow(self, name: str, *args: Any) -> Any:
        started = time.perf_counter()
        row = await self._conn.fetchrow(QUERIES[name], self.tenant, *args)
        self._slow.observe(name, time.perf_counter() - started)
        return row

    # tenants and locks

    async def ensure_tenant(self) -> None:
        """Create the tenant's row if it has none. Once this process has seen it exist (committed, not just
        inserted by this transaction, which may yet roll back), it does not ask again: a round trip saved on
        every write and audit row."""
        if self.tenant in self._known_tenants or self._created_tenant:
            return
        if await self._execute("ensure_tenant") == "INSERT 0 0":
            self._known_tenants.add(self.tenant)
        else:
            self._created_tenant = True  # by this transaction, which may yet roll back: not known

    async def lock_text_hashes(self, text_hashes: Iterable[str]) -> None:
        """Take the transaction's locks on these texts (all at once, in one global order)."""
        await self._execute("lock_text_hashes", sorted(set(text_hashes)))

    async def find_originals(self, text_hashes: Iterable[str]) -> dict[str, str]:
        """Text hash -> the original event holding that text, for those of ``text_hashes`` stored already."""
        rows = await self._fetch("find_originals", list(set(text_hashes)))
        return {row["text_hash"]: row["id"] for row in rows}

    # events, chunks, artifacts

    async def insert_event(self, event: EventRow) -> None:
        await self.insert_events([event])

    async def insert_events(self, events: Sequence[EventRow]) -> None:
        """Insert ``events`` (in one pipelined round of statements)."""
        await self._conn.executemany(QUERIES["insert_event"], [(self.tenant, *_event_values(e)) for e in events])

    async def insert_chunks(self, chunks: Sequence[ChunkRow]) -> None:
        await self._conn.executemany(
            QUERIES["insert_chunk"],
            [
                (
                    self.tenant,
                    c.id,
                    c.event_id,
                    c.seq,
                    c.session_id,
                    c.kind,
                    c.channel,
                    c.sensitivity,
                    c.text,
                    c.token_est,
                    c.importance,
                    c.pinned,
                    c.tags,
                    c.ts,
                )
                for c in chunks
            ],
        )

    async def insert_artifact(self, artifact: ArtifactRow) -> None:
        await self._execute(
            "insert_artifact",
            artifact.id,
            artifact.event_id,
            artifact.mime_type,
            artifact.content,
            artifact.chars,
            artifact.sha256,
        )

    async def existing_refs(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return {row["id"] for row in await self._fetch("existing_refs", list(ids))}

    async def get_event(self, event_id: str) -> EventRow | None:
        row = await self._fetchrow("get_event", event_id)
        return None if row is None else to_row(EventRow, row)

    async def chunk_ids_of_event(self, event_id: str) -> list[str]:
        return [row["id"] for row in await self._fetch("chunk_ids_of_event", event_id)]

    async def get_artifact(self, artifact_id: str) -> ArtifactRow | None:
        row = await self._fetchrow("get_artifact", artifact_id)
        return None if row is None else to_row(ArtifactRow, row)

    # decisions

    async def insert_decision(self, d: DecisionRow) -> None:
        await self._execute(
            "insert_decision",
            d.id,
            d.event_id,
            d.session_id,
            d.agent_id,
            d.channel,
            d.sensitivity,
            d.text,
            d.rationale,
            d.constraints,
            d.alternatives,
            d.consequences,
            d.scope,
            d.confidence,
            d.refs,
            d.importance,
            d.pinned,
            d.token_est,
            d.supersedes,
            d.ts,
        )

    async def get_decision(self, decision_id: str, *, for_update: bool = False) -> DecisionRow | None:
        row = await self._fetchrow("lock_decision" if for_update else "get_decision", decision_id)
        return None if row is None else to_row(DecisionRow, row)

    async def decision_chain_head(self, decision_id: str) -> str | None:
        row = await self._fetchrow("decision_chain_head", decision_id)
        return None if row is None else str(row["id"])

    async def mark_superseded(self, decision_id: str, successor_id: str, at: datetime) -> bool:
        return await self._execute("mark_superseded", decision_id, successor_id, at) == "UPDATE 1"

    async def decision_statuses(self, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        rows = await self._fetch("decision_statuses", list(ids))
        return {row["id"]: (row["status"], row["superseded_by"]) for row in rows}

    # tasks

    async def get_task(self, task_id: str, *, for_update: bool = False) -> TaskRow | None:
        row = await self._fetchrow("lock_task" if for_update else "get_task", task_id)
        return None if row is None else to_row(TaskRow, row)

    async def insert_task(self, t: TaskRow) -> None:
        await self._execute(
            "insert_task",
            t.id,
            t.title,
            t.status,
            t.owner,
            t.session_id,
            t.channel,
            t.sensitivity,
            t.note,
            t.token_est,
            t.last_event_id,
            t.updated_at,
        )

    async def update_task(self, t: TaskRow) -> None:
        await self._execute(
            "update_task", t.id, t.title, t.status, t.owner, t.note, t.token_est, t.last_event_id, t.updated_at
        )

    # handoffs

    async def insert_handoff(self, h: HandoffRow) -> None:
        await self._execute(
            "insert_handoff",
            h.id,
            h.from_agent,
            h.to_agent,
            h.session_id,
            h.task,
            h.constraints,
            h.decision_ids,
            h.required_files,
            h.open_questions,
            h.refs,
            h.token_est,
            h.created_at,
        )

    async def get_handoff(self, handoff_id: str) -> HandoffRow | None:
        row = await self._fetchrow("get_handoff", handoff_id)
        return None if row is None else to_row(HandoffRow, row)

    # views

    async def get_view(self, name: str) -> ViewRow | None:
        row = await self._fetchrow("get_view", name)
        return None if row is None else to_row(ViewRow, row)

    async def list_views(self) -> list[ViewRow]:
        return [to_row(ViewRow, row) for row in await self._fetch("list_views")]

    async def set_view(self, name: str, body: str, token_est: int, updated_by: str) -> ViewRow:
        row = await self._fetchrow("set_view", name, body, token_est, updated_by)
        await self._execute("notify_view_changed", name)
        return to_row(ViewRow, row)

    # the read path

    async def latest_event_ts(self, horizon: datetime) -> datetime | None:
        value: datetime | None = await self._conn.fetchval(QUERIES["latest_event_ts"], self.tenant, horizon)
        return value

    async def recent_events(self, session_id: str, horizon: datetime, limit: int) -> list[EventRow]:
        return [to_row(EventRow, r) for r in await self._fetch("recent_events", session_id, horizon, limit)]

    async def open_tasks(self, limit: int) -> list[TaskRow]:
        return [to_row(TaskRow, r) for r in await self._fetch("open_tasks", limit)]

    async def task_updates_until(self, horizon: datetime, limit: int) -> list[EventRow]:
        """Task update events made by ``horizon``, oldest first (the newest ``limit`` of them)."""
        rows = await self._fetch("task_updates_until", horizon, limit)
        return [to_row(EventRow, r) for r in reversed(rows)]

    async def decisions_as_of(self, horizon: datetime, limit: int) -> list[DecisionRow]:
        return [to_row(DecisionRow, r) for r in await self._fetch("decisions_as_of", horizon, limit)]

    async def decisions_matching(self, horizon: datetime, tsquery: str, limit: int) -> list[tuple[DecisionRow, float]]:
        rows = await self._fetch("decisions_matching", horizon, tsquery, limit)
        return [(to_row(DecisionRow, r), float(r["rank"])) for r in rows]

    async def superseded_decision_events(self, event_ids: Sequence[str], horizon: datetime) -> set[str]:
        if not event_ids:
            return set()
        return {r["event_id"] for r in await self._fetch("superseded_decision_events", list(event_ids), horizon)}

    async def decisions_by_ids(self, ids: Sequence[str]) -> list[DecisionRow]:
        return [to_row(DecisionRow, r) for r in await self._fetch("decisions_by_ids", list(ids))]

    async def agents_awaiting_handoffs(self, limit: int) -> list[str]:
        return [row["to_agent"] for row in await self._fetch("agents_awaiting_handoffs", limit)]

    async def pending_handoffs(self, to_agent: str, limit: int) -> list[HandoffRow]:
        return [to_row(HandoffRow, r) for r in await self._fetch("pending_handoffs", to_agent, limit)]

    async def delivered_handoffs(self, session_id: str, limit: int) -> list[HandoffRow]:
        return [to_row(HandoffRow, r) for r in await self._fetch("delivered_handoffs", session_id, limit)]

    async def mark_handoffs_delivered(self, ids: Sequence[str], session_id: str) -> None:
        await self._execute("mark_handoffs_delivered", list(ids), session_id)

    async def query_terms(self, query: str) -> tuple[list[str], str]:
        """The query's lexemes and an OR tsquery over them ("" when it has none)."""
        row = await self._conn.fetchrow(QUERIES["query_terms"], query)
        return list(row["terms"]), str(row["tsquery"])

    async def notify_change(self, scope: str) -> None:
        """Tell every process's hot set that ``scope`` (a session id, or ``*`` for the whole tenant) changed."""
        await self._execute("notify_change", scope)

    # maintenance

    async def derived_stale(self) -> bool:
        """Whether chunks of this tenant were deleted since they were last complete."""
        return bool(await self._conn.fetchval(QUERIES["derived_stale"], self.tenant))

    async def set_derived_stale(self, stale: bool) -> None:
        await self._execute("set_derived_stale", stale)

    async def events_missing_chunks(self, limit: int) -> list[EventRow]:
        return [to_row(EventRow, r) for r in await self._fetch("events_missing_chunks", limit)]

    async def count_rows(self, table: str) -> int:
        """Rows of this tenant in ``table`` (one of ``TABLES``)."""
        if table not in TABLES:
            raise InvalidInput("table", f"{table!r} is not a table", ", ".join(TABLES))
        column = "id" if table == "tenants" else "tenant_id"
        value: int = await self._conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", self.tenant)
        return value

    async def delete_all_chunks(self) -> None:
        """Drop this tenant's derived chunks (they are rebuilt from events)."""
        await self._execute("delete_all_chunks")

    async def count_events(self) -> int:
        value: int = await self._conn.fetchval(QUERIES["count_events"], self.tenant)
        return value

    async def events_after(self, after_id: str, limit: int) -> list[EventRow]:
        return [to_row(EventRow, r) for r in await self._fetch("events_after", after_id, limit)]

    async def delete_chunks_of_events(self, event_ids: Sequence[str]) -> None:
        await self._execute("delete_chunks_of_events", list(event_ids))

    # forgetting (sql/admin.sql)

    async def events_to_forget(self, scope: str, value: str | None = None) -> list[str]:
        """Ids of the events ``scope`` names: ``session`` (value: its id), ``subject`` (value: text found
        anywhere in the event, case-insensitively) or ``all``."""
        rows = await self._fetch(
            f"forget_targets_by_{scope}" if value is not None else "forget_targets_all",
            *([value] if value is not None else []),
        )
        return [row["id"] for row in rows]

    async def events_before(self, cutoff: datetime) -> list[str]:
        """Ids of the events retention may purge at ``cutoff`` (see ``forget_targets_before``)."""
        return [row["id"] for row in await self._fetch("forget_targets_before", cutoff)]

    async def retention(self) -> int | None:
        """This tenant's retention in days (None: kept until forgotten)."""
        row = await self._fetchrow("get_retention")
        return None if row is None else row["retention_days"]

    async def set_retention(self, days: int | None) -> None:
        await self._execute("set_retention", days)

    async def lock_out_writers(self) -> None:
        """Wait for the tenant's writes in flight, and hold new ones until this transaction ends (forget)."""
        await self._execute("lock_out_writers")

    async def existing_events(self, ids: Sequence[str]) -> list[str]:
        return [row["id"] for row in await self._fetch("forget_existing", list(ids))]

    async def duplicates_of(self, ids: Sequence[str]) -> list[str]:
        return [row["id"] for row in await self._fetch("forget_duplicates", list(ids))]

    async def tasks_of_events(self, ids: Sequence[str]) -> list[str]:
        return [row["task_id"] for row in await self._fetch("forget_task_ids", list(ids))]

    async def decisions_of_events(self, ids: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
        rows = await self._fetch("forget_decisions", list(ids))
        return [(row["id"], row["supersedes"], row["superseded_by"]) for row in rows]

    async def relink_decisions(self, predecessor: str | None, successor: str | None) -> None:
        """Splice a decision chain around a forgotten link: ``predecessor`` is now superseded by ``successor``."""
        if predecessor is not None:
            await self._execute("forget_relink_predecessor", predecessor, successor)
        if successor is not None:
            await self._execute("forget_relink_successor", successor, predecessor)

    async def delete_events(self, ids: Sequence[str]) -> dict[str, int]:
        """Delete events ``ids`` and what cascades from them, and drop the vectors that hold their text as context
        (see ``chunks_to_embed``); the number of rows of each table that went, and of vectors dropped."""
        counted = await self._fetchrow("forget_count_derived", list(ids))
        remade = _rowcount(await self._execute("forget_context_vectors", list(ids)))
        status = await self._execute("forget_events", list(ids))
        counts = {name: int(n) for name, n in dict(counted).items()}
        return {"events": _rowcount(status), **counts, "vectors_remade": remade}

    async def replace_tasks(self, task_ids: Sequence[str]) -> tuple[int, list[EventRow]]:
        """Delete tasks ``task_ids``; returns how many, and the task updates left to replay them from."""
        status = await self._execute("forget_tasks", list(task_ids))
        updates = [to_row(EventRow, r) for r in await self._fetch("forget_task_updates", list(task_ids))]
        return _rowcount(status), updates

    async def delete_handoffs(self, scope: str, value: str | None = None) -> int:
        """Delete the handoffs of a session, those mentioning a subject, or (``all``) every one."""
        name = f"forget_handoffs_by_{scope}" if value is not None else "forget_handoffs_all"
        status = await self._execute(name, *([value] if value is not None else []))
        return _rowcount(status)

    async def delete_everything_else(self) -> dict[str, int]:
        """Delete the tenant's views and API keys (forgetting a whole tenant)."""
        counts = {}
        for table, name in (("views", "forget_views_all"), ("api_keys", "forget_api_keys_all")):
            counts[table] = _rowcount(await self._execute(name))
        return counts

    # export and import (sql/admin.sql)

    async def export_page(self, table: str, since: datetime, after: str, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` rows of ``table`` (one of ``PORTABLE``) from ``since`` on, after key ``after``, as
        (key, row without tenant and generated columns)."""
        return [(row["key"], row["row"]) for row in await self._fetch(f"export_{table}", since, after, limit)]

    async def import_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Insert exported ``rows`` of ``table`` (one of ``PORTABLE``) into this tenant, columns as they come."""
        if table not in PORTABLE:
            raise InvalidInput("table", f"{table!r} cannot be imported", ", ".join(PORTABLE))
        if not rows:
            return 0
        columns = [r["column_name"] for r in await self._conn.fetch(QUERIES["insertable_columns"], table)]
        listed = ", ".join(f'"{name}"' for name in columns)
        # the names come from the catalog, never from the input; the rows travel as one jsonb parameter
        status = await self._conn.execute(
            f"INSERT INTO {table} ({listed}) SELECT {listed} FROM jsonb_populate_recordset(NULL::{table}, $1)",
            [{**row, "tenant_id": self.tenant} for row in rows],
        )
        return _rowcount(status)

    # audit

    async def audit(
        self,
        *,
        principal: str,
        action: str,
        resource_ids: Sequence[str],
        success: bool,
        latency_ms: float | None,
        request_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit row in this transaction (a forget's tombstone: written, or not, with the forget)."""
        await self.audit_many([AuditEntry(principal, action, resource_ids, success, latency_ms, request_id, detail)])

    async def audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Append ``entries`` in one round trip (asyncpg pipelines the rows of ``executemany``)."""
        started = time.perf_counter()
        await self._conn.executemany(
            QUERIES["insert_audit"],
            [
                (
                    self.tenant,
                    e.principal,
                    e.action,
                    list(e.resource_ids),
                    e.success,
                    e.latency_ms,
                    e.request_id,
                    e.detail or {},
                )
                for e in entries
            ],
        )
        self._slow.observe("insert_audit", time.perf_counter() - started)

    async def audit_since(self, since: datetime, after_id: int, limit: int) -> list[AuditRow]:
        """A page of this tenant's audit trail from ``since`` on, after row ``after_id``, oldest first."""
        return [to_row(AuditRow, r) for r in await self._fetch("audit_since", since, after_id, limit)]

    # API keys and signed requests

    async def insert_api_key(
        self, key_id: str, name: str, key_hash: str, roles: Sequence[str], agent_id: str | None, *, signed: bool
    ) -> ApiKeyRow:
        return to_row(
            ApiKeyRow, await self._fetchrow("insert_api_key", key_id, name, key_hash, list(roles), agent_id, signed)
        )

    async def list_api_keys(self) -> list[ApiKeyRow]:
        return [to_row(ApiKeyRow, r) for r in await self._fetch("list_api_keys")]

    async def revoke_api_key(self, key_id: str) -> ApiKeyRow | None:
        row = await self._fetchrow("revoke_api_key", key_id)
        return None if row is None else to_row(ApiKeyRow, row)

    async def remember_signature(self, signature: str, sent_at: int, window: float) -> tuple[bool, bool]:
        """Record a signed request's signature, if it was sent (``sent_at``, seconds since the epoch) within
        ``window`` seconds of the database's clock: (timely, fresh); fresh is False for a signature seen before
        (a replay)."""
        row = await self._fetchrow("remember_signature", signature, sent_at, window)
        assert row is not None  # one row, always
        return bool(row["timely"]), bool(row["fresh"])

    # embeddings (semantic retrieval): see the end of sql/queries.sql

    async def embedding_column_type(self) -> str:
        """``vector(384)`` where pgvector holds the chunks' vectors, ``real[]`` where it does not."""
        return str(await self._conn.fetchval(QUERIES["embedding_column_type"]))

    async def chunks_to_embed(self, limit: int) -> list[ToEmbed]:
        """Up to ``limit`` chunks without a vector yet, newest first, each with its context (see ``ToEmbed``)."""
        return [ToEmbed(*row) for row in await self._fetch("chunks_to_embed", limit)]

    async def set_embeddings(
        self, vectors: Sequence[tuple[str, Sequence[float], Sequence[float], str | None]], model: str, dimension: int
    ) -> int:
        """Store each chunk's vector and context vector, (id, vector, context vector, id of the chunk whose text
        is its context), with their model and dimension; returns how many chunks still existed."""

        def literal(vector: Sequence[float]) -> str:
            return "{" + ",".join(format(x, ".7g") for x in vector) + "}"

        ids = [chunk_id for chunk_id, *_ in vectors]
        own = [literal(vector) for _, vector, _, _ in vectors]
        context = [literal(vector) for _, _, vector, _ in vectors]
        sources = [source for *_, source in vectors]
        status = await self._execute("set_embeddings", ids, own, model, dimension, context, sources)
        return _rowcount(status)

    async def count_chunks_to_embed(self, model: str, dimension: int) -> int:
        value: int = await self._conn.fetchval(QUERIES["count_chunks_to_embed"], self.tenant, model, dimension)
        return value

    async def forget_other_embeddings(self, model: str, dimension: int) -> int:
        """Drop the vectors of any other model, so that they are embedded again; returns how many."""
        status = await self._execute("forget_other_embeddings", model, dimension)
        return _rowcount(status)

    async def semantic_neighbours(
        self, vector: Sequence[float], horizon: datetime, model: str, limit: int, *, ef_search: int = 100
    ) -> dict[str, tuple[float, float | None]]:
        """pgvector only: the ``limit`` chunks nearest to ``vector`` (HNSW), with the cosine similarity of their
        vector and of their context vector (``None``: none)."""
        await self._conn.execute(QUERIES["enter_vector_search"], str(ef_search))
        rows = await self._fetch("semantic_neighbours", list(vector), horizon, model, limit)
        return {row["id"]: _similarity_pair(row) for row in rows}

    async def similarities(
        self, ids: Sequence[str], vector: Sequence[float], model: str
    ) -> dict[str, tuple[float, float | None]]:
        """pgvector only: the cosine similarity to ``vector`` of those of ``ids`` that have a vector of ``model``,
        and of their context vector (``None``: none)."""
        if not ids:
            return {}
        rows = await self._fetch("similarities", list(ids), list(vector), model)
        return {row["id"]: _similarity_pair(row) for row in rows}

    async def chunk_vectors(self, ids: Sequence[str], model: str, dimension: int) -> dict[str, tuple[Any, Any]]:
        """Without pgvector: the stored vectors (float32 arrays) of those of ``ids`` that have one of ``model``, each
        with its context vector (``None``: none)."""
        if not ids:
            return {}
        rows = await self._fetch("chunk_vectors", list(ids), model, dimension)
        import numpy as np  # only this fallback needs it

        def array(binary: bytes | None) -> Any:
            # a 1-D real[] in binary form: a 20-byte header, then (length, value) pairs of big-endian 4-byte words
            return None if binary is None else np.frombuffer(binary, dtype=">f4", offset=20)[1::2].astype(np.float32)

        return {row["id"]: (array(row["embedding"]), array(row["context_embedding"])) for row in rows}

    async def evidence_pool(
        self,
        horizon: datetime,
        terms: Sequence[str],
        tags: Sequence[str],
        semantic_ids: Sequence[str],
        window: tuple[datetime, datetime] | None,
        *,
        lexical: int,
        recent: int,
        pinned: int,
        tagged: int,
        windowed: int,
        corpus_sample: int,
        lexical_reach: int,
    ) -> list[Candidate]:
        """The hybrid candidate pool (query ``evidence_pool``): full-text matches of the lexemes ``terms``, recent,
        pinned, tagged, the semantic neighbours ``semantic_ids`` and the newest chunks inside ``window``. The corpus
        is counted up to ``corpus_sample`` chunks; in a tenant that has as many, any full-text match is looked for
        among about the newest ``lexical_reach`` chunks only, and older chunks must match every term. Where that
        reach begins is remembered for ``ReachMemo.SECONDS``: the recalls after it do not count the newest chunks."""
        start, end = window if window is not None else (None, None)
        key = (self.tenant, horizon, corpus_sample, lexical_reach)
        since = self._reach.get(key)
        rows = await self._fetch(
            "evidence_pool",
            horizon,
            lexical,
            recent,
            pinned,
            list(tags),
            tagged,
            list(semantic_ids),
            start,
            end,
            windowed,
            list(terms),
            corpus_sample,
            lexical_reach,
            since,
        )
        pool = [Candidate(*r) for r in rows]  # the query's columns are the fields, in order
        if since is None and pool and pool[0].corpus_size >= corpus_sample and pool[0].lexical_since is not None:
            self._reach.put(key, pool[0].lexical_since)
        return pool
