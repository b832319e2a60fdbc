"""Bulk history for scenarios: many events spread over a time span, written with COPY.

Each event is prepared like a plain ``remember`` of a message (redaction, sensitivity, token estimates,
chunks) without one MCP call each, so fifty thousand load in seconds. Simplified on purpose: no artifacts,
tags or metadata, and duplicates are linked only within the seed itself. For synthetic history only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from agent_memory.ids import new_id
from agent_memory.ingest import classify, derive_chunks
from agent_memory.redact import redact
from agent_memory.replay.transcript import Seed
from agent_memory.store.database import Database
from agent_memory.store.rows import ChunkRow, EventRow
from agent_memory.text import estimate_tokens, text_hash

COPY_BATCH = 5_000


def texts(seed: Seed) -> Iterator[str]:
    """The seed's texts: its templates in turn, ``{i}`` replaced by the event's number."""
    for i in range(seed.count):
        yield seed.texts[i % len(seed.texts)].replace("{i}", str(i))


def times(seed: Seed, start: datetime, end: datetime) -> Iterator[datetime]:
    """``seed.count`` moments spread evenly from ``start`` to ``end``."""
    step = (end - start) / max(1, seed.count - 1)
    for i in range(seed.count):
        yield start + step * i


async def bulk(db: Database, tenant: str, agent: str, seed: Seed, start: datetime, end: datetime) -> int:
    """Write the seed's events and chunks straight to the store; returns the number of chunks."""
    originals: dict[str, str] = {}
    events: list[EventRow] = []
    chunks: list[ChunkRow] = []
    total = 0
    for text, ts in zip(texts(seed), times(seed, start, end), strict=True):
        clean = redact(text)
        digest = text_hash(clean.text)
        event = EventRow(
            id=new_id("event"),
            session_id=seed.session,
            agent_id=agent,
            kind=seed.kind,
            channel=seed.channel,
            actor=None,
            sensitivity="secret" if clean.found else classify(clean.text, seed.kind, seed.channel, False),
            text=clean.text,
            text_hash=digest,
            token_est=estimate_tokens(clean.text),
            tags=[],
            refs=[],
            importance=0.5,
            pinned=False,
            metadata={},
            redactions=list(clean.kinds),
            duplicate_of=originals.get(digest),
            artifact_id=None,
            original_chars=len(clean.text),
            truncated=False,
            ts=ts,
        )
        originals.setdefault(digest, event.id)
        events.append(event)
        chunks.extend(derive_chunks(event, 400))
        if len(events) >= COPY_BATCH:
            await db.copy_rows(tenant, events, chunks)
            total += len(chunks)
            events, chunks = [], []
    if events:
        await db.copy_rows(tenant, events, chunks)
        total += len(chunks)
    return total
