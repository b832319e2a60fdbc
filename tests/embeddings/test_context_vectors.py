"""Context vectors: each chunk is embedded alone and together with the chunk before it in its session, never with a
more sensitive one, and forgetting an event drops the context vectors that carry its text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mcp import Client

from agent_memory.embeddings.model import Embedder, in_context
from agent_memory.reindex import embed_chunks
from agent_memory.store.database import Database
from tests.helpers import call

pytestmark = pytest.mark.anyio

FIRST = "Nate made a batch of coconut milk ice cream for the party."
SECOND = "How did it turn out in the end?"
THIRD = "Super good! Rich and creamy, my new favourite snack."


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder().load()


async def remember(client: Client, text: str, at: str, **fields: Any) -> str:
    receipt = (await call(client, "remember", text=text, at=at, **fields))["events"][0]
    return str(receipt["id"])


async def vectors(db: Database) -> dict[str, tuple[Any, Any]]:
    """Event id -> (vector, context vector) of its chunk, as float arrays (``None`` where there is none)."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id, embedding::real[] AS own, context_embedding::real[] AS ctx FROM chunks"
        )

    def array(value: Any) -> Any:
        return None if value is None else np.array(value, dtype=np.float32)

    return {row["event_id"]: (array(row["own"]), array(row["ctx"])) for row in rows}


def same(stored: Any, expected: Any) -> bool:
    return stored is not None and float(np.dot(stored, expected)) > 0.9999


async def test_each_chunk_is_embedded_alone_and_after_the_chunk_before_it(
    client: Client, db: Database, embedder: Embedder
) -> None:
    """The first chunk of a session has no context (both vectors are its own); the next is embedded with its
    predecessor in the same session, whatever was written in another session in between."""
    first = await remember(client, FIRST, "2026-05-01T10:00:00Z", session_id="party")
    elsewhere = await remember(client, "The printer is jammed again.", "2026-05-01T10:00:30Z", session_id="office")
    second = await remember(client, SECOND, "2026-05-01T10:01:00Z", session_id="party")
    assert (await embed_chunks(db, embedder, tenant="local")).chunks == 3
    stored = await vectors(db)
    alone = embedder.embed([FIRST, SECOND, "The printer is jammed again."])
    assert same(stored[first][0], alone[0])
    assert same(stored[first][1], alone[0])
    assert same(stored[elsewhere][1], alone[2])
    assert same(stored[second][0], alone[1])
    assert same(stored[second][1], embedder.embed_one(in_context(SECOND, FIRST)))
    assert not same(stored[second][1], alone[1])


async def test_a_more_sensitive_chunk_is_never_context(client: Client, db: Database, embedder: Embedder) -> None:
    """A public chunk after a private, highly sensitive one is embedded alone: its vectors must not carry what the
    channels that may load it may not see. A chunk after a less sensitive one does get it as context."""
    await remember(client, "My diagnosis came back: it is Lyme disease.", "2026-05-02T09:00:00Z", sensitivity="high")
    public = await remember(client, SECOND, "2026-05-02T09:01:00Z", sensitivity="none", channel="public")
    private = await remember(client, THIRD, "2026-05-02T09:02:00Z", sensitivity="high")
    await embed_chunks(db, embedder, tenant="local")
    stored = await vectors(db)
    assert same(stored[public][1], embedder.embed_one(SECOND))
    assert same(stored[private][1], embedder.embed_one(in_context(THIRD, SECOND)))


async def test_forgetting_an_event_drops_the_context_vectors_that_carry_it(
    client: Client, db: Database, embedder: Embedder
) -> None:
    """The chunk after a forgotten one loses its vectors (the receipt counts them), the embedder makes them again
    with the chunk now before it, and the chunks before the forgotten one keep theirs."""
    first = await remember(client, FIRST, "2026-05-03T10:00:00Z", session_id="party")
    second = await remember(client, SECOND, "2026-05-03T10:01:00Z", session_id="party")
    third = await remember(client, THIRD, "2026-05-03T10:02:00Z", session_id="party")
    await embed_chunks(db, embedder, tenant="local")
    receipt = await call(client, "forget", event_ids=[second])
    assert (receipt["events"], receipt["vectors_remade"]) == (1, 1)
    stored = await vectors(db)
    assert second not in stored
    assert stored[third] == (None, None)
    assert same(stored[first][0], embedder.embed_one(FIRST))
    assert (await embed_chunks(db, embedder, tenant="local")).chunks == 1
    assert same((await vectors(db))[third][1], embedder.embed_one(in_context(THIRD, FIRST)))


async def test_forgetting_finds_the_vectors_that_carry_it_wherever_they_now_stand(
    client: Client, db: Database, embedder: Embedder
) -> None:
    """A reply embedded after a message carries that message's text. When an event written later with an earlier
    time lands between the two, forgetting the message still drops the reply's vectors (and those of the event
    now after it); made again, each carries what now stands before it."""
    first = await remember(client, FIRST, "2026-05-04T10:00:00Z", session_id="party")
    third = await remember(client, THIRD, "2026-05-04T10:02:00Z", session_id="party")
    await embed_chunks(db, embedder, tenant="local")
    second = await remember(client, SECOND, "2026-05-04T10:01:00Z", session_id="party")
    await embed_chunks(db, embedder, tenant="local")
    assert same((await vectors(db))[third][1], embedder.embed_one(in_context(THIRD, FIRST)))
    receipt = await call(client, "forget", event_ids=[first])
    assert (receipt["events"], receipt["vectors_remade"]) == (1, 2)
    stored = await vectors(db)
    assert stored[third] == (None, None)
    assert stored[second] == (None, None)
    assert (await embed_chunks(db, embedder, tenant="local")).chunks == 2
    stored = await vectors(db)
    assert same(stored[third][1], embedder.embed_one(in_context(THIRD, SECOND)))
    assert same(stored[second][1], embedder.embed_one(SECOND))
