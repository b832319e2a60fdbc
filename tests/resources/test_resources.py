"""Resources: views, records by id, tenant isolation and change notifications."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from agent_memory import views
from agent_memory.caller import Caller
from agent_memory.ratelimit import Limit, LocalBuckets, RateLimiter
from agent_memory.runtime import Runtime
from agent_memory.server.app import build_server
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


def _client_as(db: Database, settings: Settings, limiter: RateLimiter | None = None, **caller: Any) -> Client:
    """An in-memory client whose every call comes from a caller of tenant ``local`` with ``caller``'s fields."""
    who = Caller(tenant=settings.tenant, agent_id=settings.agent, **caller)
    runtime = Runtime(db=db, settings=settings, identify=lambda: who, limiter=limiter)
    return Client(build_server(runtime, tenant_filter=settings.tenant), raise_exceptions=True)


async def _refusal(client: Client, uri: str) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    return caught.value


async def test_views_are_read_only_in_the_channels_that_load_them(db: Database, settings: Settings) -> None:
    """memory://preferences reads only for a caller that may use the private channel, the glossary for private
    or team; identity and rules for any. A refusal is `forbidden`, names where the view is shown and what the
    caller may use, and is audited."""
    await views.set_view(db, "local", "preferences", "Prefers British spelling.", "test")
    await views.set_view(db, "local", "glossary", "ACB: active context bundle.", "test")
    await views.set_view(db, "local", "rules", "Be brief.", "test")
    async with _client_as(db, settings, channels=frozenset({"private"})) as private:
        assert await _read(private, "memory://preferences") == "Prefers British spelling."
    async with _client_as(db, settings, channels=frozenset({"team", "public"})) as team:
        refused = await _refusal(team, "memory://preferences")
        assert refused.code == -32600
        assert refused.error.message == (
            "forbidden: memory://preferences is shown only in the private channel; this caller may use public, team"
        )
        assert await _read(team, "memory://glossary") == "ACB: active context bundle."
    async with _client_as(db, settings, channels=frozenset({"public"})) as public:
        refused = await _refusal(public, "memory://glossary")
        assert "shown only in the private, team channels" in refused.error.message
        assert await _read(public, "memory://rules") == "Be brief."
    async with db.pool.acquire() as conn:
        audited = await conn.fetch("SELECT resource_ids, success, detail FROM audit_log ORDER BY id")
    refusals = [(r["resource_ids"], r["detail"]["error"]) for r in audited if not r["success"]]
    assert refusals == [(["memory://preferences"], "forbidden"), (["memory://glossary"], "forbidden")]


async def test_records_a_callers_channels_may_not_show_read_as_not_found(
    client: Client, db: Database, settings: Settings
) -> None:
    """An event or decision recorded in a channel the caller may not use, or too sensitive for every channel
    it may use, a handoff to a public-only caller, and the artifact of a hidden event all read exactly as an id
    that does not exist: -32002 with the same message."""

    async def remember(**arguments: Any) -> dict[str, Any]:
        receipt: dict[str, Any] = (await call(client, "remember", **arguments))["events"][0]
        return receipt

    private = (await remember(text="private fact", channel="private"))["id"]
    team = (await remember(text="team fact", channel="team"))["id"]
    public = (await remember(text="public fact", channel="public"))["id"]
    sensitive = (await remember(text="agent fact", channel="agent", sensitivity="high"))["id"]
    decision = (await remember(text="Ship on Fridays.", kind="decision", channel="team"))["decision_id"]
    handoff = (await call(client, "handoff_packet", to_agent="b", task="carry on"))["id"]
    output = "\n".join(f"src/module_{i:03d}.py  {i * 37} bytes" for i in range(200))
    artifact = (await remember(text=output, kind="tool_result", channel="private"))["artifact_id"]
    readable = {
        "public": {f"memory://events/{public}"},
        "team": {f"memory://events/{team}", f"memory://decisions/{decision}", f"memory://handoffs/{handoff}"},
        "agent": {f"memory://handoffs/{handoff}"},
        "private": {f"memory://events/{private}", f"memory://handoffs/{handoff}", f"memory://artifacts/{artifact}"},
    }
    every = set().union(*readable.values()) | {f"memory://events/{sensitive}"}
    for channel, expected in readable.items():
        async with _client_as(db, settings, channels=frozenset({channel})) as restricted:
            for uri in sorted(every):
                if uri in expected:
                    await _read(restricted, uri)
                    continue
                hidden = await _refusal(restricted, uri)
                ident = uri.rsplit("/", 1)[1]
                missing_id = ident[:4] + "0" * 26
                missing = await _refusal(restricted, uri.replace(ident, missing_id))
                assert (hidden.code, hidden.error.message.replace(ident, "ID")) == (
                    missing.code,
                    missing.error.message.replace(missing_id, "ID"),
                ), f"{uri} in the {channel} channel"
                assert hidden.code == -32002


async def test_resource_reads_are_rate_limited_like_tool_calls(db: Database, settings: Settings) -> None:
    """Past the tenant's burst a read is refused with `rate_limited`, how long to wait (in the message and in
    `data.retry_after`), and an audit row; a tool call then draws from the same budget."""
    limiter = RateLimiter(LocalBuckets(), per_tenant=Limit(0.5, 2), per_agent=Limit(100, 100))
    async with _client_as(db, settings, limiter) as limited:
        for _ in range(2):
            await _read(limited, "memory://rules")
        refused = await _refusal(limited, "memory://rules")
        assert refused.code == -32600
        assert refused.error.message.startswith("rate_limited: too many calls for this tenant")
        assert "retry_after=" in refused.error.message
        assert isinstance(refused.error.data, dict)
        assert refused.error.data["retry_after"] > 0
        tool = await limited.call_tool("recall", {"query": "anything"})
        assert tool.is_error
        assert "rate_limited: too many calls for this tenant" in tool.content[0].text  # type: ignore[union-attr]
    async with db.pool.acquire() as conn:
        errors = [r["detail"].get("error") for r in await conn.fetch("SELECT detail FROM audit_log ORDER BY id")]
    assert errors == [None, None, "rate_limited", "rate_limited"]


async def test_a_reader_without_a_role_is_refused_and_audited(db: Database, settings: Settings) -> None:
    """Resources share the tools' guard: a caller without a role is `forbidden` (-32600), naming the role."""
    async with _client_as(db, settings, roles=frozenset()) as nobody:
        refused = await _refusal(nobody, "memory://rules")
    assert refused.code == -32600
    assert (
        refused.error.message == "forbidden: read_resource needs the reader role (or higher); this caller has no role"
    )
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT action, success, detail FROM audit_log")
    assert (row["action"], row["success"], row["detail"]["error"]) == ("read_resource", False, "forbidden")
