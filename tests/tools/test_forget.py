"""The ``forget`` tool and command: what a tenant asks to have forgotten is found nowhere afterwards."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from agent_memory import ingest, views
from agent_memory.caller import Caller
from agent_memory.forget import ForgetReceipt, forget
from agent_memory.ingest import Limits
from agent_memory.models import EventIn, EventReceipt
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, call_error, run_cli, until_a_lock_is_awaited
from tests.server.test_http import SECRET, http_client, token

pytestmark = pytest.mark.anyio

PERSON = "Zephyrine Quist"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def remember(client: Client, text: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await call(client, "remember", text=text, **fields))["events"][0]
    return result


async def nowhere(db: Database, *needles: str) -> None:
    """Assert no row of any table, of any tenant, contains any of ``needles``."""
    for needle in needles:
        assert await db.tables_containing(needle) == [], needle


async def test_a_subject_is_found_nowhere_afterwards(client: Client, db: Database) -> None:
    """Messages, a duplicate, an artifact, a decision, task state, a handoff and a view mentioning a person:
    after forgetting the subject no table holds the name (in any case), what does not mention it survives,
    and the audit log keeps a tombstone that does not name the subject."""
    kept = await remember(client, "The release train leaves on Thursday.")
    await remember(client, f"{PERSON} asked for a refund of order 1182.")
    await remember(client, f"{PERSON} asked for a refund of order 1182.")  # a duplicate
    await remember(client, f"log line\n{'x' * 5000}\ncustomer={PERSON}", kind="tool_result")  # past the excerpt
    await remember(client, f"Refunds for {PERSON.upper()} go through finance.", kind="decision")
    task = await remember(client, "Call back", kind="task_update", task={"title": f"Call {PERSON} back"})
    await remember(client, "scheduled", kind="task_update", task={"task_id": task["task_id"], "status": "doing"})
    await call(client, "handoff_packet", to_agent="agent-b", task=f"Finish the refund for {PERSON}")
    await call(client, "handoff_packet", to_agent="agent-b", task="Ship the release notes")
    await views.set_view(db, "local", "glossary", f"VIP: {PERSON} (customer since 2019)", "test")

    receipt = await call(client, "forget", subject=PERSON.lower())

    await nowhere(db, PERSON, PERSON.lower(), "Zephyrine", "zephyrine")
    assert receipt["scope"] == "subject"
    assert receipt["events"] == 5  # two messages (one a duplicate), the tool output, the decision, the task update
    assert receipt["artifacts"] == 1
    assert receipt["decisions"] == 1
    assert receipt["handoffs"] == 1
    assert receipt["views_changed"] == 1
    assert receipt["tasks_rebuilt"] == 1
    async with db.transaction("local") as tx:
        assert await tx.get_event(kept["id"]) is not None
        rebuilt = await tx.get_task(task["task_id"])
        glossary = await tx.get_view("glossary")
        audited = [row for row in await tx.audit_since(EPOCH, 0, 1000) if row.action == "forget"]
        tombstone = [row for row in audited if row.detail.get("tombstone")]
    assert rebuilt is not None
    assert rebuilt.status == "doing"
    assert glossary is not None
    assert glossary.body == "VIP: [forgotten] (customer since 2019)"
    assert len(tombstone) == 1
    assert tombstone[0].detail["tombstone"] is True
    assert tombstone[0].detail["events"] == 5
    assert tombstone[0].detail["subject_chars"] == len(PERSON)
    bundle = await call(client, "recall", query="refund order 1182 finance", session_id="later")
    assert "1182" not in json.dumps(bundle["sections"])


async def test_a_subject_is_compared_as_written_not_as_the_database_quotes_it(client: Client, db: Database) -> None:
    """A subject with a double quote and backslashes (a path, a nickname) is found in a message, in metadata and in
    a packet (the text of a whole row would have escaped both), and is found nowhere afterwards."""
    subject = 'C:\\Users\\Zephyrine "Zeph" Quist'
    await remember(client, f"Copied the export to {subject} for review.")
    await remember(client, "Export done.", metadata={"target": {"path": subject}})
    await remember(client, "The release train leaves on Thursday.")
    await call(client, "handoff_packet", to_agent="agent-b", task=f"Check the files in {subject}")
    assert await db.tables_containing(subject) == ["events", "chunks", "handoffs"]

    receipt = await call(client, "forget", subject=subject.upper())

    assert (receipt["events"], receipt["handoffs"]) == (2, 1)
    await nowhere(db, subject, "Zephyrine")


async def test_forgetting_a_decision_splices_its_chain(client: Client, db: Database) -> None:
    """d1 → d2 → d3: forgetting d2's event leaves d1 superseded by d3 and d3 superseding d1; forgetting d3, the
    head, leaves d1 in force again, and the chain goes on from it."""
    first = await remember(client, "Budgets are 16K tokens.", kind="decision")
    second = await call(client, "supersede_decision", decision_id=first["decision_id"], text="Budgets are 32K.")
    third = await call(client, "supersede_decision", decision_id=second["decision"]["id"], text="Budgets are 65K.")
    receipt = await call(client, "forget", event_ids=[second["decision"]["event_id"]])
    assert (receipt["events"], receipt["decisions"]) == (1, 1)
    async with db.transaction("local") as tx:
        d1 = await tx.get_decision(first["decision_id"])
        d3 = await tx.get_decision(third["decision"]["id"])
        head = await tx.decision_chain_head(first["decision_id"])
    assert d1 is not None
    assert d3 is not None
    assert d1.superseded_by == d3.id
    assert d3.supersedes == d1.id
    assert head == d3.id
    await nowhere(db, "Budgets are 32K")

    await call(client, "forget", event_ids=[third["decision"]["event_id"]])  # the head itself
    async with db.transaction("local") as tx:
        d1 = await tx.get_decision(first["decision_id"])
    assert d1 is not None
    assert (d1.status, d1.superseded_by, d1.superseded_at) == ("active", None, None)  # in force again
    again = await call(client, "supersede_decision", decision_id=d1.id, text="Budgets are 48K.")
    assert again["decision"]["supersedes"] == d1.id


async def test_a_session_and_everything(client: Client, db: Database, settings: Settings) -> None:
    """A session takes its events and packets, not other sessions'; everything empties the tenant (views and
    keys too) and leaves other tenants alone."""
    await remember(client, "In session one: the vendor is Acme Widgets.", session_id="one")
    await call(client, "handoff_packet", to_agent="b", task="Chase Acme Widgets", session_id="one")
    other = await remember(client, "In session two: nothing about vendors.", session_id="two")
    receipt = await call(client, "forget", session_id="one")
    assert (receipt["events"], receipt["handoffs"]) == (1, 1)
    await nowhere(db, "Acme Widgets")

    neighbour = settings.model_copy(update={"tenant": "neighbour"})
    async with make_client(db, neighbour) as neighbours:
        await remember(neighbours, "The neighbour keeps its notes.")
    await views.set_view(db, "local", "rules", "Never mention the codename Bluefin.", "test")
    everything = await call(client, "forget", everything=True)
    assert everything["events"] == 1
    assert everything["views_changed"] == 1
    await nowhere(db, "Bluefin", "session two")
    assert await db.tables_containing(other["id"]) == ["audit_log"]  # the trail keeps ids, never content
    async with db.transaction("neighbour") as tx:
        assert await tx.count_events() == 1


async def test_bad_scopes_and_roles_are_refused(client: Client, db: Database, settings: Settings) -> None:
    """No scope or several, a malformed id, a too-short subject: refused naming the field; a writer may not
    forget (it needs admin); a refusal deletes nothing."""
    await remember(client, "Keep me.")
    assert "scope" in await call_error(client, "forget")
    assert "several given" in await call_error(client, "forget", session_id="s", subject="something")
    assert "event_ids[0]" in await call_error(client, "forget", event_ids=["dec_01JABCDEFGHJKMNPQRSTVWXYZ0"])
    assert "subject" in await call_error(client, "forget", subject="ab")
    secured = settings.model_copy(update={"auth": "required", "jwt_secret": SecretStr(SECRET)})
    async with (
        http_client(db, secured, token(tenant="local", roles=("writer",))) as http,
        Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as writer,
    ):
        refused = await writer.call_tool("forget", {"everything": True})
    assert refused.is_error
    assert "admin role" in refused.content[0].text  # type: ignore[union-attr]
    async with db.transaction("local") as tx:
        assert await tx.count_events() == 1


async def test_the_forget_command(database_url: str, db: Database) -> None:
    """`agent-memory forget --subject` prints the receipt; `--everything` wants `--yes`."""
    async with make_client(db, Settings(database_url=database_url, tenant="acme")) as client:
        await remember(client, "Patient record of Ortwin Blau.")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, "forget", "--tenant", "acme", *args)

    done = run("--subject", "Ortwin Blau")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == 1
    await nowhere(db, "Ortwin")
    unconfirmed = run("--everything")
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr


async def test_a_forget_waits_for_a_write_in_flight_and_takes_its_duplicate(db: Database) -> None:
    """A write that stored a duplicate of an event and has not committed yet: the forget of that event waits for
    it, then sees the duplicate and forgets it too (before, the duplicate outlived the forget, holding its text).
    A write that starts while a forget runs waits for it."""
    caller = Caller(tenant="local", agent_id="agent-a")
    text = f"{PERSON} keeps the spare key under the third stone."
    [original] = (await ingest.remember(db, caller, [EventIn(text=text)], Limits())).events
    receipts: list[ForgetReceipt] = []

    async def forgetting() -> None:
        receipts.append(await forget(db, caller, "events", [original.id]))

    with anyio.fail_after(20):
        # a write in flight (the group outlives it: the forget ends after it commits)
        async with anyio.create_task_group() as group, db.transaction(caller.tenant, writes=True) as tx:
            [duplicate] = await ingest.store_events(tx, caller, [EventIn(text=text)], Limits())
            assert duplicate.duplicate_of == original.id
            group.start_soon(forgetting)
            await until_a_lock_is_awaited(db, "advisory")
            assert not receipts  # the forget waits for the write
    assert receipts[0].events == 2
    await nowhere(db, "third stone")

    written: list[EventReceipt] = []

    async def writing() -> None:
        written.extend((await ingest.remember(db, caller, [EventIn(text=text)], Limits())).events)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group, db.transaction(caller.tenant) as tx:  # a forget in flight
            await tx.lock_out_writers()
            group.start_soon(writing)
            await until_a_lock_is_awaited(db, "advisory")
            assert not written  # the write waits for the forget
    assert len(written) == 1


async def test_a_forget_and_a_supersede_in_flight_do_not_deadlock(client: Client, db: Database) -> None:
    """A supersede holds the old decision's row when it stores the new one; a forget of the old one deletes that row.
    The supersede takes the forget lock before the row, so the forget waits for it, instead of each waiting for the
    other (PostgreSQL would then abort one)."""
    caller = Caller(tenant="local", agent_id="agent-a")
    said = await remember(client, "We deploy on Fridays.", kind="decision")
    decision_id = said["decision_id"]
    receipts: list[ForgetReceipt] = []

    async def forgetting() -> None:
        receipts.append(await forget(db, caller, "events", [said["id"]]))

    with anyio.fail_after(20):
        # what supersede does, paused between locking the old decision and storing the new one
        async with anyio.create_task_group() as group, db.transaction(caller.tenant, writes=True) as tx:
            assert await tx.get_decision(decision_id, for_update=True) is not None
            group.start_soon(forgetting)
            await until_a_lock_is_awaited(db, "advisory")
            await ingest.store_events(tx, caller, [EventIn(text="We deploy on Thursdays.")], Limits())
    assert receipts[0].decisions == 1
