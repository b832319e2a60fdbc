"""A tenant's data out and back in: ``agent-memory export`` and ``agent-memory import``.

The export is JSON lines: a header (``format``, ``version``, ``tenant``, ``schema_version``, ``exported_at``,
``since``), then one line per row, ``{"table": ..., "row": {...}}``, table by table in the order of
``PORTABLE`` (events, artifacts, chunks with their vectors, decisions, tasks, handoffs, views): everything
recall is built from, ids and times as they were. The audit trail and API keys are not part of it.

An import restores such a file into a tenant that holds no events yet (another name is fine), in one
transaction: all of it or nothing. The same requests then give the same bundles in both tenants.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from agent_memory.errors import Conflict, InvalidInput
from agent_memory.store.database import PORTABLE, Database
from agent_memory.store.migrate import latest_version

FORMAT = "agent-memory-export"
VERSION = 1
PAGE = 1000
BATCH = 500
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


async def export(db: Database, tenant: str, since: datetime | None = None) -> AsyncIterator[dict[str, Any]]:
    """The header, then every row of ``tenant`` (from ``since`` on), page by page."""
    yield {
        "format": FORMAT,
        "version": VERSION,
        "tenant": tenant,
        "schema_version": latest_version(),
        "exported_at": datetime.now(UTC).isoformat(),
        "since": since.isoformat() if since else None,
    }
    async with db.transaction(tenant, snapshot=True) as tx:  # one moment: rows never point at missing ones
        for table in PORTABLE:
            after = ""
            while True:
                page = await tx.export_page(table, since or EARLIEST, after, PAGE)
                for _, row in page:
                    yield {"table": table, "row": row}
                if len(page) < PAGE:
                    break
                after = page[-1][0]


async def import_lines(db: Database, tenant: str, lines: Iterable[str]) -> dict[str, int]:
    """Restore an export into ``tenant``, which must hold no events; rows imported per table."""
    records = iter(_parsed(lines))
    header = next(records, None)
    if header is None or header.get("format") != FORMAT:
        raise InvalidInput(
            "input", "does not start with an agent-memory export header", "a file made by agent-memory export"
        )
    if header.get("version") != VERSION:
        raise InvalidInput("version", f"{header.get('version')!r} is not supported", f"{VERSION}")
    counts = dict.fromkeys(PORTABLE, 0)
    async with db.transaction(tenant, writes=True) as tx:
        await tx.ensure_tenant()
        if await tx.count_events():
            raise Conflict(f"tenant {tenant!r} already holds events: import only into an empty tenant")
        batch: list[dict[str, Any]] = []
        table = ""

        async def flush() -> None:
            if batch:
                counts[table] += await tx.import_rows(table, batch)
                batch.clear()

        for number, record in enumerate(records, start=2):
            if record.get("table") not in PORTABLE or not isinstance(record.get("row"), dict):
                raise InvalidInput(f"line {number}", "is not a row of an export", '{"table": ..., "row": {...}}')
            if record["table"] != table or len(batch) >= BATCH:
                await flush()
                table = record["table"]
            batch.append(record["row"])
        await flush()
        await tx.notify_change("*")
    return counts


def _parsed(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {number}", f"is not JSON ({exc.msg})", "one JSON object per line") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"line {number}", "is not a JSON object", "one JSON object per line")
        yield value
