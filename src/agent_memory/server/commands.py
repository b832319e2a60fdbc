"""The CLI's commands besides serving: migrate, doctor, views, API keys and the audit trail (none of them loads
the MCP SDK). The admin commands are audited like tool calls, as principal ``cli:<OS user>``."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from agent_memory import audit, keys, portable, views
from agent_memory.caller import Caller
from agent_memory.embeddings.model import MODEL_ID, Embedder
from agent_memory.errors import AgentMemoryError, InvalidInput
from agent_memory.forget import forget, purge_expired
from agent_memory.forget import scope_of as forget_scope
from agent_memory.reindex import ReindexReport, embed_chunks
from agent_memory.reindex import reindex as rebuild
from agent_memory.settings import Settings
from agent_memory.store.backup import backup, restore
from agent_memory.store.connect import data_dir, open_database
from agent_memory.store.database import Database
from agent_memory.store.embedded import EmbeddedPostgres
from agent_memory.store.migrate import applied_versions, latest_version
from agent_memory.store.migrate import migrate as apply_migrations
from agent_memory.store.rows import ViewRow

__all__ = [
    "backup_command",
    "create_key_command",
    "doctor",
    "doctor_command",
    "export_audit",
    "export_audit_command",
    "export_command",
    "forget_command",
    "import_command",
    "list_keys_command",
    "migrate",
    "purge_audit_command",
    "reindex",
    "reindex_command",
    "restore_command",
    "retention_purge_command",
    "retention_set_command",
    "retention_show_command",
    "revoke_key_command",
    "set_view",
    "set_view_command",
    "show_view",
    "show_view_command",
]


async def migrate(settings: Settings) -> int:
    """Apply pending migrations and say which."""
    async with open_database(settings, run_migrations=False) as db, db.pool.acquire() as conn:
        applied = await apply_migrations(conn)
        current = await applied_versions(conn)
    done = ", ".join(str(v) for v in applied) if applied else "none pending"
    print(f"migrations applied: {done}; schema version {max(current, default=0)}")
    return 0


def _redacted_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def doctor(settings: Settings) -> dict[str, Any]:
    """Where the data lives, which database, which schema version, what is running."""
    report: dict[str, Any] = {"tenant": settings.tenant, "expected_schema_version": latest_version()}
    if settings.database_url is not None:
        report["database"] = {"kind": "external", "url": _redacted_url(settings.database_url.get_secret_value())}
    else:
        status = await anyio.to_thread.run_sync(EmbeddedPostgres(data_dir(settings)).status)
        report["database"] = {
            "kind": "embedded",
            "data_dir": str(status.data_dir),
            "pgdata": str(status.pgdata),
            "initialized": status.initialized,
            "running": status.running,
            "postmaster_pid": status.pid,
            "processes_using_it": status.handles,
            "postgres_version": status.postgres_version,
        }
    try:
        async with open_database(settings, run_migrations=False) as db:
            report.update(await _schema_report(db))
    except AgentMemoryError as exc:
        report.update({"ok": False, "problem": exc.message})
    return report


_UNINDEXED_SEARCH = "full-text search reads whole tenants: give its functions a BYPASSRLS owner (docs/deploy.md)"


async def _schema_report(db: Database) -> dict[str, Any]:
    applied, expected = await db.schema_status()
    # the search functions use their indexes only when their owner bypasses row-level security
    server_version, has_vector, unindexed = await db.server_report()
    current = max(applied, default=0)
    return {
        "ok": current == expected,
        "schema_version": current,
        "server_version": server_version,
        "pgvector": bool(has_vector),
        "search_indexed": not unindexed,
        **({"search_hint": _UNINDEXED_SEARCH} if unindexed else {}),
        **({} if current == expected else {"problem": "schema is behind: run `agent-memory migrate`"}),
    }


async def set_view(settings: Settings, name: str, body: str) -> ViewRow:
    """Replace a view of the configured tenant."""
    async with open_database(settings) as db:
        return await views.set_view(db, settings.tenant, name, body, updated_by="cli")


async def show_view(settings: Settings, name: str) -> str | None:
    """The body of a view of the configured tenant, or None when it was never written."""
    async with open_database(settings) as db:
        row = await views.get_view(db, settings.tenant, name)
    return None if row is None else row.body


def _progress_bar(tenant: str, done: int, total: int) -> None:
    """One line on stderr, redrawn: ``reindex local [#######.....] 700/1000``."""
    width = 30
    filled = width * done // total if total else width
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\rreindex {tenant} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
    sys.stderr.flush()


async def reindex(settings: Settings, *, all_tenants: bool, batch: int, embeddings: bool = False) -> ReindexReport:
    """Rebuild chunks and caches of the configured tenant, or of every tenant; with ``embeddings``, embed the
    chunks that lack a vector of the current model instead (a backfill)."""
    async with open_database(settings) as db:
        if embeddings:
            return await embed_chunks(
                db,
                Embedder(threads=settings.embedding_threads),
                tenant=None if all_tenants else settings.tenant,
                batch=settings.embedding_batch,
                progress=_progress_bar,
            )
        return await rebuild(
            db,
            tenant=None if all_tenants else settings.tenant,
            batch=batch,
            chunk_tokens=settings.chunk_tokens,
            progress=_progress_bar,
        )


async def doctor_command(settings: Settings) -> int:
    """Print the doctor's report as JSON; 1 when something is wrong."""
    report = await doctor(settings)
    print(json.dumps(report, indent=2, default=str))
    return 0 if report.get("ok") else 1


async def reindex_command(settings: Settings, *, all_tenants: bool, batch: int, embeddings: bool = False) -> int:
    """Rebuild (or embed) and say what was done."""
    report = await reindex(settings, all_tenants=all_tenants, batch=batch, embeddings=embeddings)
    if embeddings:
        print(f"embedded {report.chunks} chunks of {report.tenants} tenant(s) with {MODEL_ID}")
    else:
        print(f"reindexed {report.events} events of {report.tenants} tenant(s) into {report.chunks} chunks")
    return 0


async def set_view_command(settings: Settings, name: str, file: str) -> int:
    """Replace a view from a file (``-`` for stdin) and say its new version."""
    body = sys.stdin.read() if file == "-" else await anyio.Path(file).read_text(encoding="utf-8")
    row = await set_view(settings, name, body)
    print(f"view {row.name} of tenant {settings.tenant} is now version {row.version} ({row.token_est} tokens)")
    return 0


async def show_view_command(settings: Settings, name: str) -> int:
    """Print a view; 1 when it was never written."""
    body = await show_view(settings, name)
    if body is None:
        print(f"agent-memory: view {name} of tenant {settings.tenant} has not been written", file=sys.stderr)
        return 1
    sys.stdout.write(body if body.endswith("\n") else body + "\n")
    return 0


def _operator(settings: Settings) -> Caller:
    """The caller an admin command acts as: the OS user at the console, in the configured tenant."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return Caller(tenant=settings.tenant, agent_id="cli", principal=f"cli:{user}")


@dataclass
class _Action:
    """What an admin command reports to its audit row: the ids it touched and details."""

    ids: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def _audited(db: Database, settings: Settings, action: str) -> AsyncIterator[_Action]:
    """Audit the admin command run inside: one row when it ends, a failed one too."""
    started, done, error = time.perf_counter(), _Action(), None
    try:
        yield done
    except AgentMemoryError as exc:
        error = exc.code
        raise
    finally:
        await audit.record(
            db,
            _operator(settings),
            action,
            resource_ids=done.ids,
            success=error is None,
            latency_ms=(time.perf_counter() - started) * 1000,
            request_id=None,
            detail={**done.detail, **({"error": error} if error else {})},
        )


async def create_key_command(
    settings: Settings, *, role: str, name: str, agent: str | None, require_signature: bool
) -> int:
    """Create a key of the configured tenant: the key alone on stdout (shown this once), the rest on stderr."""
    async with open_database(settings) as db, _audited(db, settings, "keys_create") as action:
        action.detail.update(role=role, name=name)
        made = await keys.create(
            db, settings.tenant, role=role, name=name, agent_id=agent, require_signature=require_signature
        )
        action.ids.append(made.row.id)
    acts = f"agent {agent}" if agent else "any agent"
    signed = "; every request must be signed" if require_signature else ""
    print(
        f"API key {made.row.id} of tenant {settings.tenant} ({role}, {acts}{signed}). It is shown this once: "
        "store it now.",
        file=sys.stderr,
    )
    print(made.key)
    return 0


async def list_keys_command(settings: Settings) -> int:
    """One line per key of the configured tenant (never the key itself)."""
    async with open_database(settings) as db, _audited(db, settings, "keys_list") as action:
        rows = await keys.list_keys(db, settings.tenant)
        action.ids.extend(row.id for row in rows)
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        print(
            f"{row.id}  {row.name}  {','.join(row.roles)}  agent={row.agent_id or '*'}  "
            f"signed={'yes' if row.require_signature else 'no'}  created {row.created_at:%Y-%m-%d %H:%M}  "
            f"last used {used}  {state}"
        )
    if not rows:
        print(f"tenant {settings.tenant} has no API keys", file=sys.stderr)
    return 0


async def revoke_key_command(settings: Settings, key_id: str) -> int:
    """Revoke a key of the configured tenant; every replica refuses it from the next request on."""
    async with open_database(settings) as db, _audited(db, settings, "keys_revoke") as action:
        action.ids.append(key_id)
        row = await keys.revoke(db, settings.tenant, key_id)
    print(f"API key {row.id} of tenant {settings.tenant} is revoked (since {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC)")
    return 0


def _since(text: str | None) -> datetime:
    if text is None:
        return datetime.min.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "--since", f"{text!r} is not a date or time", "ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def export_audit(db: Database, tenant: str, since: datetime, *, page: int = 1000) -> Any:
    """The tenant's audit rows from ``since`` on, oldest first, page by page (an async iterator of dicts)."""
    after = 0
    while True:
        async with db.transaction(tenant) as tx:
            rows = await tx.audit_since(since, after, page)
        for row in rows:
            yield row.model_dump(mode="json")
        if len(rows) < page:
            return
        after = rows[-1].id


async def export_audit_command(settings: Settings, since: str | None) -> int:
    """Print the configured tenant's audit rows as JSON lines."""
    moment = _since(since)
    async with open_database(settings) as db, _audited(db, settings, "audit_export") as action:
        action.detail.update(since=moment.isoformat(), rows=0)
        async for row in export_audit(db, settings.tenant, moment):
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            action.detail["rows"] += 1
        sys.stdout.flush()
    return 0


async def purge_audit_command(settings: Settings, older_than_days: int | None) -> int:
    """Delete every tenant's audit rows older than the retention."""
    days = settings.audit_retention_days if older_than_days is None else older_than_days
    if days < 0:
        raise InvalidInput("--older-than-days", f"{days} is negative", "0 (keep everything) or more days")
    if days == 0:
        print("audit retention is 0 (keep forever): nothing purged")
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=days)
    async with open_database(settings) as db, _audited(db, settings, "audit_purge") as action:
        action.detail["before"] = cutoff.isoformat()
        deleted = await db.purge_audit(cutoff)
        action.detail["deleted"] = deleted
    print(f"deleted {deleted} audit rows older than {cutoff:%Y-%m-%d %H:%M} UTC ({days} days)")
    return 0


async def forget_command(
    settings: Settings, *, event_ids: list[str] | None, session_id: str | None, subject: str | None, everything: bool
) -> int:
    """Forget a scope of the configured tenant and print the receipt as JSON."""
    scope, value = forget_scope(event_ids=event_ids, session_id=session_id, subject=subject, everything=everything)
    async with open_database(settings) as db:
        receipt = await forget(db, _operator(settings), scope, value)
    print(json.dumps({"tenant": settings.tenant, **receipt.model_dump()}, indent=2))
    return 0


async def export_command(settings: Settings, since: str | None, output: str | None) -> int:
    """Write the configured tenant's data as JSON lines to ``output`` (a path, or stdout)."""
    moment = _since(since) if since else None
    rows = 0
    async with open_database(settings) as db, _audited(db, settings, "export") as action:
        with open(output, "w", encoding="utf-8") if output else contextlib.nullcontext(sys.stdout) as out:  # noqa: ASYNC230 - a local file, written line by line
            async for record in portable.export(db, settings.tenant, moment):
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                rows += "table" in record
        action.detail.update(rows=rows, since=moment.isoformat() if moment else None)
    print(f"exported {rows} rows of tenant {settings.tenant}", file=sys.stderr)
    return 0


async def import_command(settings: Settings, source: str) -> int:
    """Restore an export (a path, or - for stdin) into the configured tenant, which must hold no events."""
    async with open_database(settings) as db, _audited(db, settings, "import") as action:
        if source == "-":
            counts = await portable.import_lines(db, settings.tenant, sys.stdin)
        else:
            with open(source, encoding="utf-8") as lines:  # noqa: ASYNC230 - read line by line
                counts = await portable.import_lines(db, settings.tenant, lines)
        action.detail.update(counts)
    print(json.dumps({"tenant": settings.tenant, "imported": counts}, indent=2))
    return 0


async def backup_command(settings: Settings, output: str) -> int:
    """Dump the whole database (embedded or external) into ``output`` with pg_dump."""
    async with open_database(settings) as db:
        size = await backup(db, Path(output))
    print(f"backed up the database into {output} ({size:,} bytes)", file=sys.stderr)
    return 0


async def restore_command(settings: Settings, source: str) -> int:
    """Replace the database's contents with a backup; every server drops its caches."""
    async with open_database(settings, run_migrations=False) as db:
        await restore(db, Path(source))
        await db.notify_everything_changed()
    print(f"restored the database from {source}", file=sys.stderr)
    return 0


async def retention_set_command(settings: Settings, days: int | None) -> int:
    """Set (or clear, with None) the configured tenant's retention."""
    if days is not None and days < 1:
        raise InvalidInput("--days", f"{days} is not a positive number of days", "1 or more, or --forever")
    async with open_database(settings) as db, _audited(db, settings, "retention_set") as action:
        action.detail["days"] = days
        async with db.transaction(settings.tenant) as tx:
            await tx.ensure_tenant()
            await tx.set_retention(days)
    kept = f"{days} days" if days else "until forgotten"
    print(f"tenant {settings.tenant} keeps events {kept}")
    return 0


async def retention_show_command(settings: Settings) -> int:
    async with open_database(settings) as db, db.transaction(settings.tenant) as tx:
        days = await tx.retention()
    print(f"tenant {settings.tenant} keeps events {f'{days} days' if days else 'until forgotten'}")
    return 0


async def retention_purge_command(settings: Settings, *, all_tenants: bool) -> int:
    """Forget what is past its tenant's retention: the configured tenant, or every tenant that has one."""
    async with open_database(settings) as db:
        tenants = [t for t, _ in await db.tenants_with_retention()] if all_tenants else [settings.tenant]
        receipts = {}
        for tenant in tenants:
            operator = replace(_operator(settings), tenant=tenant)
            receipt = await purge_expired(db, operator)
            receipts[tenant] = None if receipt is None else receipt.model_dump()
    print(json.dumps(receipts, indent=2))
    return 0
