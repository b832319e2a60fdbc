"""Resources: views, records by id, tenant isolation and change notifications."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from agent_memory import views
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call

pytestmark = pytest.mark.anyio


async def _read(client: Client, uri: str) -> str:
    result = await client.read_resource(uri)
    text: str = result.contents[0].text  # type: ignore[union-attr]
    return text


async def test_every_view_and_template_is_listed(client: Client) -> None:
    """The four views are resources; decisions, events, handoffs and artifacts are templates."""
    listed = {str(r.uri) for r in (await client.list_resources()).resources}
    assert listed == {"memory://identity", "memory://rules", "memory://preferences", "memory://glossary"}
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert templates == {
        "memory://decisions/{record_id}",
        "memory://events/{record_id}",
        "memory://handoffs/{record_id}",
        "memory://artifacts/{artifact_id}",
    }


async def test_views_read_what_people_wrote(client: Client, db: Database) -> None:
    """An unwritten view reads empty; after a write it reads the new body, secrets redacted."""
    assert await _read(client, "memory://rules") == ""
    await views.set_view(db, "local", "rules", "1. Cite sources.\n2. password=hunter2hunter2\n", "test")
    body = await _read(client, "memory://rules")
    assert "Cite sources" in body
    assert "hunter2hunter2" not in body


async def test_records_by_id_come_from_the_callers_tenant_only(
    client: Client, db: Database, settings: Settings
) -> None:
    """Events, decisions and handoffs read by id; another tenant's ids are not found, like unknown ids."""
    event = (await call(client, "remember", text="a fact"))["events"][0]["id"]
    decision = (await call(client, "remember", text="a decision", kind="decision"))["events"][0]["decision_id"]
    handoff = (await call(client, "handoff_packet", to_agent="b", task="carry on"))["id"]
    assert json.loads(await _read(client, f"memory://events/{event}"))["text"] == "a fact"
    assert json.loads(await _read(client, f"memory://decisions/{decision}"))["status"] == "active"
    assert json.loads(await _read(client, f"memory://handoffs/{handoff}"))["task"] == "carry on"
    other = settings.model_copy(update={"tenant": "other"})
    async with make_client(db, other) as other_client:
        for uri in (f"memory://events/{event}", f"memory://decisions/{decision}", f"memory://handoffs/{handoff}"):
            with pytest.raises(MCPError) as caught:
                await other_client.read_resource(uri)
            assert caught.value.code == -32002
            assert "this tenant" in caught.value.error.message


async def test_malformed_ids_are_invalid_params(client: Client) -> None:
    """An id of the wrong kind is an invalid-params error that says which kind was expected."""
    with pytest.raises(MCPError) as caught:
        await client.read_resource("memory://decisions/evt_01M8G6QWH5DRT8XFQ9KRMF7238")
    assert caught.value.code == -32602
    assert "decision id" in caught.value.error.message


async def test_listeners_hear_about_view_changes_from_any_process(client: Client, db: Database) -> None:
    """A client listening on memory://rules is told when the view changes, here through the database's
    NOTIFY as the CLI of another process would cause it."""
    async with client.listen(resource_subscriptions=["memory://rules"]) as subscription:
        await views.set_view(db, "local", "identity", "I am agent A", "test")
        await views.set_view(db, "local", "rules", "Be brief.", "test")
        with anyio.fail_after(10):
            event = await subscription.__anext__()
    assert event.uri == "memory://rules"  # type: ignore[union-attr]
    assert await _read(client, "memory://rules") == "Be brief."


async def test_view_changes_of_another_tenant_are_not_announced(client: Client, db: Database) -> None:
    """Another tenant writing its rules sends nothing to this tenant's listeners (a bounded wait)."""
    async with client.listen(resource_subscriptions=["memory://rules"]) as subscription:
        await views.set_view(db, "other-tenant", "rules", "theirs", "test")
        with anyio.move_on_after(1.0) as waited:
            await subscription.__anext__()
    assert waited.cancelled_caught, "a view change of another tenant reached this tenant's listener"
