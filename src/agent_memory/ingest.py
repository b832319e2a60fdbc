"""The write path: what ``remember`` does to each event before and while it is stored.

For each event, in order, inside one transaction for the whole call:

1. validate what pydantic cannot (text length, time window, refs, decision/task fields per kind);
2. redact secrets from the text and metadata (nothing raw reaches the database) and classify sensitivity;
3. keep oversized tool output whole as an artifact and an excerpt in the event;
4. link an exact duplicate (same tenant, normalised text) to the first occurrence instead of re-chunking;
5. cut chunks of about ``chunk_tokens`` with token estimates computed once;
6. project decisions into the ledger and task updates into the task table.

``derive_chunks`` is also what ``reindex`` uses, so rebuilt chunks equal the ones written here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent_memory import refs as references
from agent_memory.caller import Caller
from agent_memory.context.hotset import HotCache
from agent_memory.errors import InvalidInput, Retryable
from agent_memory.ids import new_id
from agent_memory.models import DecisionFields, EventIn, EventReceipt, RememberResult, TaskFields
from agent_memory.pii import contains_pii
from agent_memory.redact import Redaction, redact, redact_value
from agent_memory.store.database import Database, Tx
from agent_memory.store.rows import ArtifactRow, ChunkRow, DecisionRow, EventRow
from agent_memory.tasks import apply_update, task_id_of
from agent_memory.text import chunk_text, estimate_tokens, excerpt, text_hash
from agent_memory.vocabulary import Channel, Sensitivity

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
METADATA_MAX_BYTES = 64 * 1024
WRITE_ATTEMPTS = 3  # a conflict the lock order cannot prevent (e.g. with supersede) is retried
TOOL_OUTPUT_KINDS = frozenset({"tool_result", "tool_call", "artifact"})
DECLARED_SECRET = "[REDACTED:declared_secret]"  # noqa: S105 - the marker that replaces a declared secret


@dataclass(frozen=True)
class Limits:
    """Size limits of the write path (from settings)."""

    batch_max: int = 500
    text_max_chars: int = 1_000_000
    artifact_threshold_chars: int = 4000
    chunk_tokens: int = 400


def classify(text: str, kind: str, channel: Channel, redacted: bool) -> Sensitivity:
    """Sensitivity when the caller gives none: secret if anything was redacted; high for personal data,
    preferences and the private channel; none for the public channel; low otherwise."""
    if redacted:
        return "secret"
    if kind == "preference" or channel == "private" or contains_pii(text):
        return "high"
    if channel == "public":
        return "none"
    return "low"


def artifact_pointer(artifact_id: str, chars: int) -> str:
    """The line that tells a reader where the whole of a truncated output is."""
    return f"[full output: memory://artifacts/{artifact_id}, {chars} characters]"


def _pieces(event: EventRow, target_tokens: int) -> list[str]:
    """The chunk texts of ``event``; every piece of a truncated output ends with the pointer to the whole."""
    if event.artifact_id is None:
        return chunk_text(event.text, target_tokens)
    pointer = artifact_pointer(event.artifact_id, event.original_chars)
    body = event.text.removesuffix(pointer).rstrip()
    budget = max(50, target_tokens - estimate_tokens(pointer))
    return [f"{piece}\n{pointer}" for piece in chunk_text(body, budget)]


def derive_chunks(event: EventRow, target_tokens: int) -> list[ChunkRow]:
    """The retrieval chunks of ``event`` (none for a duplicate: the original's chunks serve it)."""
    if event.duplicate_of is not None:
        return []
    return [
        ChunkRow(
            id=new_id("chunk"),
            event_id=event.id,
            seq=seq,
            session_id=event.session_id,
            kind=event.kind,
            channel=event.channel,
            sensitivity=event.sensitivity,
            text=piece,
            token_est=estimate_tokens(piece),
            importance=event.importance,
            pinned=event.pinned,
            tags=event.tags,
            ts=event.ts,
        )
        for seq, piece in enumerate(_pieces(event, target_tokens))
    ]


async def remember(
    db: Database, caller: Caller, events: Sequence[EventIn], limits: Limits, hot: HotCache | None = None
) -> RememberResult:
    """Store ``events`` for ``caller`` in one transaction: all of them, or (on any error) none. What they
    change is dropped from ``hot`` here and, through NOTIFY, from every other process's hot set."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            async with db.transaction(caller.tenant, writes=True) as tx:
                receipts = await store_events(tx, caller, events, limits)
                scopes = changed_scopes(receipts)
                for scope in scopes:
                    await tx.notify_change(scope)
            break
        except Retryable:
            # concurrent batches sharing texts can deadlock on the duplicate locks: the loser runs again
            if attempt == WRITE_ATTEMPTS:
                raise
    if hot is not None:
        for scope in scopes:
            hot.invalidate(caller.tenant, scope)
    return RememberResult(count=len(receipts), events=receipts)


def changed_scopes(receipts: Sequence[EventReceipt]) -> list[str]:
    """The hot-set scopes stored events touch: their sessions, and the whole tenant (``*``) when a decision
    or task changed."""
    scopes = {r.session_id for r in receipts}
    if any(r.decision_id or r.task_id for r in receipts):
        scopes.add("*")
    return sorted(scopes)


async def store_events(
    tx: Tx, caller: Caller, events: Sequence[EventIn], limits: Limits, *, supersedes: str | None = None
) -> list[EventReceipt]:
    """Validate and store ``events`` inside ``tx`` (begun as a write: ``Database.transaction(writes=True)``); a
    decision among them supersedes ``supersedes``."""
    if not tx.writes:
        msg = "store_events needs a transaction begun as a write (db.transaction(..., writes=True))"
        raise RuntimeError(msg)
    if not events:
        raise InvalidInput("events", "no events given", f"1 to {limits.batch_max} events")
    if len(events) > limits.batch_max:
        raise InvalidInput("events", f"{len(events)} events in one call", f"at most {limits.batch_max}")
    now = datetime.now(UTC)
    prefix = "events[{}]." if len(events) > 1 else ""
    for index, item in enumerate(events):
        _check_shape(item, prefix.format(index), now, limits)
    await tx.ensure_tenant()
    await _check_refs(tx, events, prefix)
    scrubbed = [redact(item.text) for item in events]
    # Lock every text this call may store, in one global order, before storing any: concurrent calls that
    # share texts then queue instead of deadlocking, and exactly one of them stores each text first.
    digests = {text_hash(r.text) for r in scrubbed}
    if any(item.sensitivity == "secret" for item in events):
        digests.add(text_hash(DECLARED_SECRET))
    await tx.lock_text_hashes(digests)
    originals = await tx.find_originals(digests)  # each event stored below adds its text if it is new
    pending = _Pending(tx)
    receipts = [
        await _store_one(tx, caller, item, clean, now, limits, supersedes, originals, pending)
        for item, clean in zip(events, scrubbed, strict=True)
    ]
    await pending.flush()
    return receipts


class _Pending:
    """Plain events and their chunks, written together (a batch of 500 messages in two pipelined statements
    rather than a thousand round trips); flushed before anything that needs the rows in place (an artifact, a
    decision, a task) and at the end of the call."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.events: list[EventRow] = []
        self.chunks: list[ChunkRow] = []

    def add(self, event: EventRow, chunks: list[ChunkRow]) -> None:
        self.events.append(event)
        self.chunks.extend(chunks)

    async def flush(self) -> None:
        if self.events:
            await self.tx.insert_events(self.events)
            await self.tx.insert_chunks(self.chunks)
        self.events, self.chunks = [], []


def _check_shape(item: EventIn, where: str, now: datetime, limits: Limits) -> None:
    """Checks that need no database: text, time window, per-kind structured fields, metadata size."""
    if not item.text.strip():
        raise InvalidInput(f"{where}text", "is empty", "non-blank text")
    for field, value in (("text", item.text), ("actor", item.actor), ("tags", item.tags), ("metadata", item.metadata)):
        if "\\u0000" in json.dumps(value, default=str):  # PostgreSQL text cannot hold NUL
            raise InvalidInput(f"{where}{field}", "contains a NUL character (\\u0000)", "text without NUL characters")
    if len(item.text) > limits.text_max_chars:
        raise InvalidInput(
            f"{where}text", f"{len(item.text)} characters", f"at most {limits.text_max_chars} characters"
        )
    if item.at is not None and not EARLIEST <= item.at <= now + FUTURE_SLACK:
        raise InvalidInput(
            f"{where}at", f"{item.at.isoformat()} is outside the accepted window", "1970-01-01 to one day from now"
        )
    kind = item.kind or "message"
    if item.decision is not None and kind != "decision":
        raise InvalidInput(f"{where}decision", f"given with kind={kind}", "only with kind=decision")
    if item.task is not None and kind != "task_update":
        raise InvalidInput(f"{where}task", f"given with kind={kind}", "only with kind=task_update")
    size = len(json.dumps(item.metadata, default=str).encode("utf-8"))
    if size > METADATA_MAX_BYTES:
        raise InvalidInput(f"{where}metadata", f"{size} bytes of JSON", f"at most {METADATA_MAX_BYTES} bytes")
    references.check_shapes(f"{where}refs", item.refs)


async def _check_refs(tx: Tx, events: Sequence[EventIn], prefix: str) -> None:
    """Every ref must name an event or decision of this tenant (or an earlier event of this call, by the
    id returned for it: such ids do not exist yet, so refs can only point backwards in time)."""
    found = await tx.existing_refs(sorted({ref for item in events for ref in item.refs}))
    for index, item in enumerate(events):
        references.check_found(f"{prefix.format(index)}refs", item.refs, found)


async def _store_one(
    tx: Tx,
    caller: Caller,
    item: EventIn,
    scrubbed: Redaction,
    now: datetime,
    limits: Limits,
    supersedes: str | None,
    originals: dict[str, str],
    pending: _Pending,
) -> EventReceipt:
    """Store one event; ``originals`` (text hash -> original event) says whether its text was stored before, and
    learns it when it was not."""
    kind = item.kind or "message"
    channel: Channel = item.channel or "private"
    session_id = item.session_id or "default"
    metadata, meta_kinds, _ = redact_value(item.metadata)
    labels, label_kinds, _ = redact_value({"actor": item.actor, "tags": sorted(set(item.tags))})
    assert isinstance(labels, dict)
    structured, structured_kinds = _structured(item, kind, supersedes)
    kinds = sorted(set(scrubbed.kinds) | meta_kinds | label_kinds | structured_kinds)
    text = scrubbed.text
    if item.sensitivity == "secret" and not kinds:
        text, kinds = DECLARED_SECRET, ["declared_secret"]
    sensitivity: Sensitivity = "secret" if kinds else (item.sensitivity or classify(text, kind, channel, False))

    digest = text_hash(text)  # of the whole text: two equal outputs are duplicates even when truncated
    event_id = new_id("event")
    artifact: ArtifactRow | None = None
    original_chars = len(text)
    if kind in TOOL_OUTPUT_KINDS and len(text) > limits.artifact_threshold_chars:
        artifact = ArtifactRow(
            id=new_id("artifact"),
            event_id=event_id,
            mime_type="text/plain",
            content=text,
            chars=len(text),
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        )
        text = f"{excerpt(text)}\n{artifact_pointer(artifact.id, original_chars)}"

    duplicate_of = originals.get(digest)
    if duplicate_of is None:
        originals[digest] = event_id
    importance = item.importance if item.importance is not None else (0.8 if kind == "decision" else 0.5)
    event = EventRow(
        id=event_id,
        session_id=session_id,
        agent_id=caller.agent_id,
        kind=kind,
        channel=channel,
        actor=labels["actor"],
        sensitivity=sensitivity,
        text=text,
        text_hash=digest,
        token_est=estimate_tokens(text),
        tags=labels["tags"],
        refs=list(dict.fromkeys(item.refs)),
        importance=importance,
        pinned=item.pinned,
        metadata=metadata if isinstance(metadata, dict) else {},
        structured=structured,
        redactions=kinds,
        duplicate_of=duplicate_of,
        artifact_id=artifact.id if artifact else None,
        original_chars=original_chars,
        truncated=artifact is not None,
        ts=item.at or now,
    )
    chunks = derive_chunks(event, limits.chunk_tokens)
    if artifact is None and kind not in {"decision", "task_update"}:
        pending.add(event, chunks)
    else:
        await pending.flush()
        await tx.insert_event(event)
        if artifact is not None:
            await tx.insert_artifact(artifact)
        await tx.insert_chunks(chunks)

    decision_id = task_id = None
    if kind == "decision":
        decision = decision_row(event)
        await tx.insert_decision(decision)
        decision_id = decision.id
    elif kind == "task_update":
        task_id = await _project_task(tx, event)
    return EventReceipt(
        id=event.id,
        kind=event.kind,
        session_id=event.session_id,
        sensitivity=event.sensitivity,
        token_est=event.token_est,
        chunk_ids=[chunk.id for chunk in chunks],
        duplicate_of=duplicate_of,
        redactions=kinds,
        truncated=event.truncated,
        original_chars=original_chars,
        artifact_id=event.artifact_id,
        decision_id=decision_id,
        task_id=task_id,
    )


def _structured(item: EventIn, kind: str, supersedes: str | None) -> tuple[dict[str, Any], set[str]]:
    """The decision's or task's own fields as they are kept on the event (ground truth), secrets redacted;
    a new task gets its id here so that the event records which task it created."""
    if kind == "decision":
        fields = (item.decision or DecisionFields()).model_dump(exclude_none=True)
        value: dict[str, Any] = {"decision": fields, **({"supersedes": supersedes} if supersedes else {})}
    elif kind == "task_update":
        task = item.task or TaskFields()
        value = {"task": {**task.model_dump(exclude_none=True), "task_id": task.task_id or new_id("task")}}
    else:
        return {}, set()
    clean, kinds, _ = redact_value(value)
    assert isinstance(clean, dict)
    return clean, kinds


def decision_row(event: EventRow) -> DecisionRow:
    """The ledger row projected from a decision event (its structured fields say what it supersedes)."""
    fields = DecisionFields.model_validate(event.structured.get("decision", {}))
    size = estimate_tokens("\n".join([event.text, fields.rationale or "", *fields.constraints, *fields.consequences]))
    return DecisionRow(
        id=new_id("decision"),
        event_id=event.id,
        session_id=event.session_id,
        agent_id=event.agent_id,
        channel=event.channel,
        sensitivity=event.sensitivity,
        text=event.text,
        rationale=fields.rationale,
        constraints=fields.constraints,
        alternatives=fields.alternatives,
        consequences=fields.consequences,
        scope=fields.scope,
        confidence=fields.confidence,
        refs=event.refs,
        importance=event.importance,
        pinned=event.pinned,
        token_est=size,
        supersedes=event.structured.get("supersedes"),
        ts=event.ts,
    )


async def _project_task(tx: Tx, event: EventRow) -> str:
    """Create the task the event names, or update it with the fields the event carries."""
    task_id = task_id_of(event)
    current = await tx.get_task(task_id, for_update=True)
    task = apply_update(current, event)
    if current is None:
        await tx.insert_task(task)
    else:
        await tx.update_task(task)
    return task_id
