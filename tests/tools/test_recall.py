"""The ``recall`` tool: the active context bundle, its rules and its paths, through a real MCP client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_memory import views
from agent_memory.context.hotset import HANDOFFS
from agent_memory.context.policy import caps_for
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.conftest import make_client
from tests.helpers import call, call_error

pytestmark = pytest.mark.anyio

SECTION_ORDER = ["identity", "rules", "handoff", "task_state", "decisions", "evidence", "recent"]


def section(bundle: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(s for s in bundle["sections"] if s["name"] == name)["items"]


def all_text(bundle: dict[str, Any]) -> str:
    return "\n".join(item["text"] for s in bundle["sections"] for item in s["items"])


def omitted(bundle: dict[str, Any], reason: str) -> set[str]:
    return {i for o in bundle["omissions"] if o["reason"] == reason for i in o["ids"]}


async def remember(client: Client, text: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await call(client, "remember", text=text, **fields))["events"][0]
    return result


async def seed_everything(client: Client, db: Database) -> None:
    """Views, tasks, decisions and a long session: more than any section's cap at a small budget."""
    await views.set_view(db, "local", "identity", "I am the build agent of the Atlas project. " * 30, "test")
    await views.set_view(db, "local", "rules", "Always cite the events you rely on. " * 200, "test")
    for i in range(15):
        await remember(client, f"Task {i}: port module {i} to the new API", kind="task_update", session_id="s")
        await remember(client, f"Decision {i}: module {i} keeps its public API stable.", kind="decision")
    await call(
        client,
        "remember",
        session_id="s",
        channel="team",
        events=[{"text": f"Turn {i}: we discussed the API migration of module {i} in depth. " * 8} for i in range(60)],
    )


@pytest.mark.parametrize("budget", [512, 4000, 65000])
async def test_sections_never_exceed_their_caps_or_the_budget(client: Client, db: Database, budget: int) -> None:
    """At 512, 4,000 and 65,000 tokens every section stays within its scaled cap and the total within
    the budget; sections come in the documented order; what did not fit is listed as a budget omission."""
    await seed_everything(client, db)
    bundle = await call(client, "recall", query="API migration of module 3", session_id="s", budget_tokens=budget)
    assert [s["name"] for s in bundle["sections"]] == SECTION_ORDER
    caps = caps_for(budget)
    for s in bundle["sections"]:
        assert s["token_est"] == sum(item["token_est"] for item in s["items"])
        assert s["token_est"] <= caps[s["name"]] == s["cap"]
    assert bundle["token_used_est"] <= budget
    assert bundle["budget_tokens"] == budget
    if budget < 65000:
        assert omitted(bundle, "budget")
    for s in bundle["sections"]:
        for item in s["items"]:
            assert item["refs"], item


async def test_items_carry_their_source_ids(client: Client) -> None:
    """Evidence and recent items cite their event; decisions cite the decision and its event."""
    event = await remember(client, "The database is PostgreSQL 18.", session_id="s")
    decision = await remember(client, "Use PostgreSQL for everything.", kind="decision", refs=[event["id"]])
    bundle = await call(client, "recall", query="which database do we use", session_id="s")
    decision_items = section(bundle, "decisions")
    assert decision_items[0]["refs"][:2] == [decision["decision_id"], decision["id"]]
    assert event["id"] in decision_items[0]["refs"]
    assert section(bundle, "recent")[0]["refs"] == [event["id"]]


@pytest.mark.parametrize("channel", ["private", "team", "agent", "public"])
async def test_privacy_matrix(client: Client, db: Database, channel: str) -> None:
    """Each channel loads only its sensitivities and views; secrets never load anywhere."""
    await views.set_view(db, "local", "identity", "I am Atlas.", "test")
    await views.set_view(db, "local", "rules", "Be precise.", "test")
    await views.set_view(db, "local", "preferences", "The user prefers metric units.", "test")
    await views.set_view(db, "local", "glossary", "ACB: active context bundle.", "test")
    await remember(client, "Deploy notes: the pipeline is green.", sensitivity="none", session_id="s")
    await remember(client, "Deploy notes: the staging cluster is called kestrel.", sensitivity="low", session_id="s")
    await remember(client, "Deploy notes: the incident was my fault.", sensitivity="high", session_id="s")
    await remember(client, "Deploy notes: my home address is 1 Elm Street.", channel="private", session_id="s")
    secret = "sk-proj-" + "Zx9" * 16
    await remember(client, f"Deploy notes: the key is {secret}", channel="team", session_id="s")
    bundle = await call(client, "recall", query="deploy notes", session_id="s", channel=channel)
    text = all_text(bundle)
    kinds = {item["kind"] for s in bundle["sections"] for item in s["items"]}
    assert "pipeline is green" in text
    assert secret not in text
    assert "[REDACTED" not in text
    assert "kestrel" in text
    assert ("my fault" in text) is (channel in {"private", "team"})
    assert ("Elm Street" in text) is (channel in {"private", "team"})
    assert "view:identity" in kinds
    assert "view:rules" in kinds
    assert ("view:preferences" in kinds) is (channel == "private")
    assert ("view:glossary" in kinds) is (channel in {"private", "team"})
    if channel in {"agent", "public"}:
        assert omitted(bundle, "privacy")


async def test_superseded_decisions_only_with_history(client: Client) -> None:
    """After D2 supersedes D1, "what is the policy now?" loads D2, not D1; with history both, D1 marked."""
    d1 = (await remember(client, "Policy: the context budget is 32K tokens.", kind="decision"))["decision_id"]
    d2 = (await call(client, "supersede_decision", decision_id=d1, text="Policy: the context budget is 65K tokens."))[
        "decision"
    ]["id"]
    now = await call(client, "recall", query="what is the budget policy now?", session_id="q")
    texts = [item["text"] for item in section(now, "decisions")]
    assert any("65K" in t for t in texts)
    assert not any("32K" in t for t in texts)
    assert "32K" not in all_text(now)
    assert d1 in omitted(now, "superseded")
    history = await call(client, "recall", query="budget policy", session_id="q", include_history=True)
    marked = [item["text"] for item in section(history, "decisions") if item["refs"][0] == d1]
    assert marked == [f"[superseded by {d2}] Policy: the context budget is 32K tokens."]


async def test_summaries_without_refs_are_never_loaded(client: Client) -> None:
    """A summary that cites nothing is left out as an unreferenced summary."""
    summary = await remember(client, "Summary: the release train leaves on Thursdays.", kind="summary", session_id="s")
    bundle = await call(client, "recall", query="when does the release train leave", session_id="s")
    assert "release train" not in all_text(bundle)
    assert summary["id"] in omitted(bundle, "unreferenced summary")


async def test_a_summary_contradicted_by_newer_events_is_flagged(client: Client) -> None:
    """A stale summary says the budget is 32K; newer events say 65K: the event is loaded, the conflict
    flagged with both sides' ids, the summary left out."""
    old = datetime.now(UTC) - timedelta(days=3)
    source = await remember(client, "We set the ACB budget to 32K tokens.", at=old.isoformat(), session_id="a")
    summary = await remember(
        client,
        "Summary of planning: the ACB budget is 32K tokens.",
        kind="summary",
        refs=[source["id"]],
        at=(old + timedelta(hours=1)).isoformat(),
        session_id="a",
    )
    newer = await remember(client, "Update: the ACB budget is now 65K tokens.", session_id="b")
    bundle = await call(client, "recall", query="what is the ACB budget?", session_id="c")
    assert bundle["conflicts"]
    conflict = bundle["conflicts"][0]
    assert conflict["item"] == summary["id"]
    assert newer["id"] in conflict["newer"]
    assert "32K" in conflict["says"]
    assert "65K" in conflict["newer_says"]
    assert summary["id"] in omitted(bundle, "conflict")
    evidence_refs = {ref for item in section(bundle, "evidence") for ref in item["refs"]}
    assert newer["id"] in evidence_refs
    assert summary["id"] not in evidence_refs


async def test_handoff_replaces_the_senders_transcript(client: Client, db: Database, settings: Settings) -> None:
    """After agent A's 30 turns and a packet to B, B's recall holds the packet, the decisions it names and at
    most 20 evidence chunks — none of A's turns in the recent window — and the packet is delivered."""
    turns = [
        {"text": f"A turn {i}: refactoring the billing module, step {i} of the payment flow.", "session_id": "work"}
        for i in range(30)
    ]
    await call(client, "remember", events=turns, agent_id="agent-a")
    decision = await remember(client, "Billing amounts are integers in cents.", kind="decision", agent_id="agent-a")
    packet = await call(
        client,
        "handoff_packet",
        to_agent="agent-b",
        task="Finish the billing refactor: the payment flow",
        decision_ids=[decision["decision_id"]],
        open_questions=["Is the refund path covered?"],
        session_id="work",
        agent_id="agent-a",
    )
    bundle = await call(client, "recall", query="", session_id="work", agent_id="agent-b", channel="agent")
    handoff_items = section(bundle, "handoff")
    assert len(handoff_items) == 1
    assert packet["id"] in handoff_items[0]["refs"]
    assert "Finish the billing refactor" in handoff_items[0]["text"]
    assert any(decision["decision_id"] in item["refs"] for item in section(bundle, "decisions"))
    assert len(section(bundle, "evidence")) <= 20
    assert not any(item["text"].startswith("A turn") for item in section(bundle, "recent"))
    async with db.transaction("local") as tx:
        stored = await tx.get_handoff(packet["id"])
    assert stored is not None
    assert stored.status == "delivered"
    again = await call(client, "recall", query="refund path", session_id="work", agent_id="agent-b", channel="agent")
    assert packet["id"] in section(again, "handoff")[0]["refs"]
    other_agent = await call(client, "recall", query="", session_id="work", agent_id="agent-c")
    assert section(other_agent, "handoff") == []


async def test_a_packet_reaches_its_agent_however_many_others_wait(client: Client) -> None:
    """With more packets pending for other agents than one recall delivers, an agent's own packet still
    reaches it; an agent with none keeps the fast path."""
    await call(client, "recall", query="", session_id="s", agent_id="agent-c")  # warm the hot set
    for index in range(HANDOFFS + 5):
        await call(client, "handoff_packet", to_agent=f"worker-{index}", task=f"chore {index}")
    mine = await call(client, "handoff_packet", to_agent="agent-b", task="Rotate the staging certificates")
    bundle = await call(client, "recall", query="", session_id="s", agent_id="agent-b", channel="agent")
    assert [item["refs"][0] for item in section(bundle, "handoff")] == [mine["id"]]
    await call(client, "recall", query="", session_id="s", agent_id="agent-c")
    idle = await call(client, "recall", query="", session_id="s", agent_id="agent-c")
    assert idle["provenance"]["path"] == "fast"
    assert section(idle, "handoff") == []


async def test_the_same_request_gives_the_same_bundle(client: Client, db: Database) -> None:
    """Determinism: the same store and request give identical sections, omissions and conflicts."""
    await seed_everything(client, db)
    request = {"query": "module 7 API migration", "session_id": "s", "budget_tokens": 4000}
    first = await call(client, "recall", **request)
    second = await call(client, "recall", **request)
    for key in ("sections", "omissions", "conflicts", "token_used_est"):
        assert first[key] == second[key]
    assert first["provenance"]["query_terms"] == second["provenance"]["query_terms"]


async def test_fast_retrieval_and_cold_paths(client: Client, db: Database, settings: Settings) -> None:
    """The first recall of a session is cold; a "continue" turn then is fast (no retrieval); a query is
    retrieval; after a restart (a new server with an empty hot set) the first recall is cold again."""
    await remember(client, "We are migrating the billing module.", session_id="s")
    first = await call(client, "recall", intent="continue", session_id="s")
    assert first["provenance"]["path"] == "cold"
    fast = await call(client, "recall", intent="continue", session_id="s")
    assert fast["provenance"]["path"] == "fast"
    assert fast["provenance"]["candidate_pool"] == 0
    assert "retrieval_ms" not in fast["provenance"]["timings_ms"]
    assert fast["sections"] == first["sections"]
    retrieval = await call(client, "recall", query="billing module", session_id="s")
    assert retrieval["provenance"]["path"] == "retrieval"
    assert retrieval["provenance"]["candidate_pool"] >= 1
    assert retrieval["provenance"]["query_terms"] == ["bill", "modul"]  # English stems
    async with make_client(db, settings) as restarted:
        cold = await call(restarted, "recall", intent="continue", session_id="s")
    assert cold["provenance"]["path"] == "cold"
    assert cold["sections"] == first["sections"]


async def test_a_write_in_another_process_reaches_this_hot_set(
    client: Client, db: Database, settings: Settings
) -> None:
    """Server 2 remembers into a session server 1 has cached: server 1's next recall shows it (NOTIFY)."""
    await remember(client, "first message", session_id="shared")
    await call(client, "recall", intent="continue", session_id="shared")
    async with make_client(db, settings) as other:
        await remember(other, "second message from another process", session_id="shared")
    with anyio.fail_after(10):
        while True:
            bundle = await call(client, "recall", intent="continue", session_id="shared")
            if "second message" in all_text(bundle):
                break
            await anyio.sleep(0.05)
    assert bundle["provenance"]["path"] == "cold"


async def test_repetition_does_not_grow_the_bundle(client: Client, db: Database, settings: Settings) -> None:
    """A fact said twenty times costs no more than said once."""
    other = settings.model_copy(update={"tenant": "other"})
    await remember(client, "The ACB budget is 65K tokens.", session_id="s")
    once = await call(client, "recall", query="what is the budget?", session_id="s")
    async with make_client(db, other) as repeated_client:
        for _ in range(20):
            await remember(repeated_client, "The ACB budget is 65K tokens.", session_id="s")
        repeated = await call(repeated_client, "recall", query="what is the budget?", session_id="s")
    assert repeated["token_used_est"] <= once["token_used_est"]
    items = [i for s in repeated["sections"] for i in s["items"] if "65K" in i["text"]]
    assert len(items) <= 3
    assert len(omitted(repeated, "duplicate")) >= 19


async def test_as_of_rebuilds_the_past(client: Client) -> None:
    """`as_of` between D1 and its supersession shows D1 in force and nothing recorded later."""
    start = datetime.now(UTC) - timedelta(days=10)
    d1 = await remember(client, "Ship weekly.", kind="decision", at=start.isoformat())
    await call(
        client,
        "supersede_decision",
        decision_id=d1["decision_id"],
        text="Ship daily.",
        at=(start + timedelta(days=5)).isoformat(),
    )
    await remember(client, "A later note about shipping.", at=(start + timedelta(days=6)).isoformat(), session_id="x")
    then = (start + timedelta(days=2)).isoformat()
    past = await call(client, "recall", query="how often do we ship", as_of=then, session_id="x")
    texts = [i["text"] for i in section(past, "decisions")]
    assert texts == ["Ship weekly."]
    assert "later note" not in all_text(past)
    now = await call(client, "recall", query="how often do we ship", session_id="x")
    assert [i["text"] for i in section(now, "decisions")] == ["Ship daily."]


async def test_bounded_candidate_pool_and_items(client: Client) -> None:
    """With thousands of matching chunks the pool stays ≤ 2,000 and evidence ≤ 200 items."""
    events = [{"text": f"Log line {i}: the cache warmed in {i} ms."} for i in range(500)]
    for _ in range(5):
        await call(client, "remember", events=[{**e, "text": e["text"] + f" run {_}"} for e in events])
    bundle = await call(client, "recall", query="cache warmed", session_id="none")
    assert bundle["provenance"]["candidate_pool"] <= 2000
    assert len(section(bundle, "evidence")) <= 200
    assert bundle["provenance"]["items_considered"] >= len(section(bundle, "evidence"))


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"channel": "everyone"}, "channel"),
        ({"budget_tokens": 100}, "budget_tokens"),
        ({"budget_tokens": 100000}, "budget_tokens"),
        ({"as_of": "last tuesday"}, "as_of"),
        ({"as_of": "2026-01-01T00:00:00"}, "as_of"),
        ({"intent": "dance"}, "intent"),
    ],
)
async def test_bad_arguments_are_named(client: Client, arguments: dict[str, Any], field: str) -> None:
    """Each bad argument gets an error naming it."""
    message = await call_error(client, "recall", query="x", **arguments)
    assert field in message


async def test_as_of_replays_task_state(client: Client) -> None:
    """`as_of` shows a task as it stood then: open before it was done, gone once done."""
    start = datetime.now(UTC) - timedelta(days=4)
    created = await remember(
        client, "Write the importer", kind="task_update", at=start.isoformat(), task={"task_id": "T-1"}
    )
    assert created["task_id"] == "T-1"
    await remember(
        client,
        "started",
        kind="task_update",
        at=(start + timedelta(days=1)).isoformat(),
        task={"task_id": "T-1", "status": "doing", "note": "parsing works"},
    )
    await remember(
        client,
        "finished",
        kind="task_update",
        at=(start + timedelta(days=2)).isoformat(),
        task={"task_id": "T-1", "status": "done"},
    )
    day_one = await call(client, "recall", intent="continue", as_of=(start + timedelta(hours=30)).isoformat())
    assert [i["text"] for i in section(day_one, "task_state")] == [
        "[doing] Write the importer (owner: agent-a) — parsing works"
    ]
    day_zero = await call(client, "recall", intent="continue", as_of=(start + timedelta(hours=1)).isoformat())
    assert [i["text"] for i in section(day_zero, "task_state")] == ["[open] Write the importer (owner: agent-a)"]
    now = await call(client, "recall", intent="continue")
    assert section(now, "task_state") == []


async def test_tagged_events_are_candidates_by_tag(client: Client) -> None:
    """An event tagged with a word of the query is a candidate even when its text shares no lexeme."""
    tagged = await remember(client, "Rounding happens once, at the end.", tags=["billing"], session_id="a")
    newer = [{"text": f"Unrelated chatter number {i}."} for i in range(350)]  # pushes it out of the recent pool
    await call(client, "remember", events=newer, session_id="a")
    bundle = await call(client, "recall", query="billing", session_id="b")
    assert any(tagged["id"] in item["refs"] for item in section(bundle, "evidence"))


async def test_dropped_chunks_are_rebuilt_on_the_cold_path(client: Client, db: Database, settings: Settings) -> None:
    """Derived chunks deleted behind the server's back: the next cold recall rebuilds them within bounds,
    says how many in provenance, and answers as before."""
    await remember(client, "The invoices service is written in Go.", session_id="a")
    await remember(client, "Invoices are archived after seven years.", session_id="a")
    before = await call(client, "recall", query="invoices service archive", session_id="b")
    async with db.pool.acquire() as conn:
        await conn.execute("DELETE FROM chunks")
        assert await conn.fetchval("SELECT derived_stale FROM tenants WHERE id = 'local'") is True
    async with make_client(db, settings) as restarted:
        after = await call(restarted, "recall", query="invoices service archive", session_id="b")
        again = await call(restarted, "recall", query="invoices service archive", session_id="b")
    assert after["provenance"]["path"] == "cold"
    assert after["provenance"]["rebuilt_chunks"] == 2
    assert again["provenance"]["rebuilt_chunks"] == 0
    assert after["sections"] == before["sections"]
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT derived_stale FROM tenants WHERE id = 'local'") is False


async def test_unrelated_recent_chatter_is_not_evidence(client: Client) -> None:
    """With a query, recent chunks that share no word with it are candidates but never evidence."""
    await call(client, "remember", events=[{"text": f"Lunch order {i}: noodles and tea."} for i in range(30)])
    wanted = await remember(client, "The refund window for enterprise customers is 60 days.")
    bundle = await call(client, "recall", query="refund window", session_id="elsewhere")
    evidence = section(bundle, "evidence")
    assert [item["refs"][0] for item in evidence] == [wanted["id"]]
    assert bundle["provenance"]["candidate_pool"] > 1


async def test_a_newer_event_in_the_recent_window_still_beats_a_stale_summary(client: Client) -> None:
    """When the contradicting event is in this session's recent window, the summary is still left out and
    the conflict flagged."""
    old = datetime.now(UTC) - timedelta(days=3)
    source = await remember(client, "We set the ACB budget to 32K tokens.", at=old.isoformat(), session_id="a")
    summary = await remember(
        client,
        "Summary: the ACB budget is 32K tokens.",
        kind="summary",
        refs=[source["id"]],
        at=(old + timedelta(hours=1)).isoformat(),
        session_id="a",
    )
    newer = await remember(client, "Update: the ACB budget is now 65K tokens.", session_id="b")
    bundle = await call(client, "recall", query="what is the ACB budget?", session_id="b")
    assert any(newer["id"] in item["refs"] for item in section(bundle, "recent"))
    assert summary["id"] in omitted(bundle, "conflict")
    assert not any("Summary" in item["text"] for s in bundle["sections"] for item in s["items"])
    assert bundle["conflicts"][0]["item"] == summary["id"]


async def test_a_superseded_decision_stays_out_of_the_recent_window(client: Client) -> None:
    """Asking in the very thread where D1 was made still loads D2 only; D1's event is omitted as superseded."""
    d1 = await remember(client, "Dunning: retry failed cards 3 times over 5 days.", kind="decision", session_id="s")
    await call(client, "supersede_decision", decision_id=d1["decision_id"], text="Dunning: retry 4 times over 9 days.")
    bundle = await call(client, "recall", query="what is the dunning policy now?", session_id="s")
    assert "3 times" not in all_text(bundle)
    assert d1["id"] in omitted(bundle, "superseded")
    assert any("4 times" in item["text"] for item in section(bundle, "decisions"))


async def test_punctuation_is_not_a_search_term(client: Client) -> None:
    """An em dash or other punctuation in the query does not become a lexeme."""
    bundle = await call(client, "recall", query="budget — policy … (now)?", session_id="s")
    assert bundle["provenance"]["query_terms"] == ["budget", "polici"]


async def test_a_public_recall_neither_shows_nor_delivers_a_packet(client: Client, db: Database) -> None:
    """The public channel shows no handoff: the packet stays pending for a channel that may show it."""
    packet = await call(client, "handoff_packet", to_agent="agent-b", task="Rotate the signing keys")
    public = await call(client, "recall", query="", session_id="p", agent_id="agent-b", channel="public")
    assert section(public, "handoff") == []
    assert packet["id"] in omitted(public, "privacy")
    async with db.transaction("local") as tx:
        stored = await tx.get_handoff(packet["id"])
    assert stored is not None
    assert stored.status == "pending"


def test_the_hot_set_refuses_state_read_before_a_write() -> None:
    """State loaded before an invalidation of its tenant is not cached (it may miss that write)."""
    from agent_memory.context.hotset import HotCache, SessionHot

    hot = HotCache()
    before = hot.generation("t")
    hot.invalidate("t", "s")  # a write commits while the state is being read
    hot.put_session("t", "s", SessionHot(recent=[], delivered=[]), before)
    assert hot.session("t", "s") is None
    hot.put_session("t", "s", SessionHot(recent=[], delivered=[]), hot.generation("t"))
    assert hot.session("t", "s") is not None
