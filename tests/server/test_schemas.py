"""Output schemas as listed: references inlined, nullable fields as type lists, and the same documents accepted
as by the schema pydantic writes."""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

from agent_memory.runtime import Runtime, local_identity
from agent_memory.server.app import build_server
from agent_memory.server.schemas import compact
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.helpers import call

pytestmark = pytest.mark.anyio


class Leaf(BaseModel):
    """A leaf."""

    name: str
    when: str | None
    mood: Literal["calm", "busy"] | None = None


class Tree(BaseModel):
    leaves: list[Leaf]
    first: Leaf | None = None
    children: list[Tree] = []


def accepts(schema: dict[str, Any], document: Any) -> bool:
    return Draft202012Validator(schema).is_valid(document)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_references_inlined_and_nullable_types_listed() -> None:
    """A model's references are inlined and its nullable plain fields become type lists."""
    schema = compact(Leaf.model_json_schema())
    assert schema["properties"]["when"] == {"title": "When", "type": ["string", "null"]}
    # an enum refuses null unless it lists it: such a field keeps its anyOf
    assert "anyOf" in schema["properties"]["mood"]


def test_a_recursive_definition_stays_a_reference() -> None:
    """A model that holds itself keeps its definition as a reference; the others are inlined."""
    original = Tree.model_json_schema()
    schema = compact(original)
    text = json.dumps(schema)
    assert '"#/$defs/Leaf"' not in text
    assert list(schema["$defs"]) == ["Tree"]
    assert schema["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    deep = {"leaves": [], "children": [{"leaves": [{"name": "a", "when": None}], "children": [{"leaves": [7]}]}]}
    assert not accepts(original, deep)
    assert not accepts(schema, deep)
    deep["children"][0]["children"][0]["leaves"] = [{"name": "b", "when": "today", "mood": "calm"}]
    assert accepts(original, deep)
    assert accepts(schema, deep)


async def test_listed_output_schemas_accept_what_the_originals_accept(db: Database, settings: Settings) -> None:
    """Every tool's listed output schema holds no reference and no nullable anyOf of a plain type; a real bundle,
    and that bundle broken in ways a client must notice, are judged alike by it and by pydantic's schema."""
    server = build_server(Runtime(db=db, settings=settings, identify=local_identity(settings)))
    originals = {tool.name: tool.output_schema for tool in await MCPServer.list_tools(server)}
    async with Client(server, raise_exceptions=True) as client:
        listed = {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}
        await call(client, "remember", text="Billing moved to the new queue on Monday.", session_id="s1")
        bundle = await call(client, "recall", query="billing queue", budget_tokens=2000)
    assert listed.keys() == originals.keys()
    for name, schema in listed.items():
        assert schema is not None, name
        text = json.dumps(schema)
        assert "$ref" not in text, name
        assert '{"type": "null"}' not in text, name

    assert any(s["items"] for s in bundle["sections"])
    broken = []
    for path, value in (
        (("budget_tokens",), "many"),  # a number as text
        (("sections", 0, "items"), None),  # a list that is null
        (("provenance", "as_of"), 3),  # a nullable date-time that is a number
        (("provenance", "path"), "sideways"),  # not one of the paths
    ):
        document = copy.deepcopy(bundle)
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        broken.append(document)
    missing = copy.deepcopy(bundle)
    del missing["sections"]
    broken.append(missing)
    nulled = copy.deepcopy(bundle)
    nulled["provenance"]["as_of"] = None
    for document in (bundle, nulled):
        assert accepts(originals["recall"], document)
        assert accepts(listed["recall"], document)
    for document in broken:
        assert not accepts(originals["recall"], document)
        assert not accepts(listed["recall"], document)


def test_definitions_that_refer_to_each_other_keep_every_one_they_need() -> None:
    """A refers to B and C, B to A, C to B and to itself: every reference left resolves to a kept definition,
    and the compacted schema judges documents as the original does."""

    def node(*children: str) -> dict[str, Any]:
        return {"type": "object", "properties": {c.lower(): {"$ref": f"#/$defs/{c}"} for c in children}}

    original = {"$ref": "#/$defs/A", "$defs": {"A": node("B", "C"), "B": node("A"), "C": node("B", "C")}}
    schema = compact(original)
    assert {ref.removeprefix("#/$defs/") for ref in _refs(schema)} <= set(schema.get("$defs", {}))
    for document, valid in (
        ({"b": {"a": {"c": {"c": {}}}}}, True),
        ({"b": {"a": {"c": {"c": 7}}}}, False),
        ({"c": {"b": {"a": "x"}}}, False),
    ):
        assert accepts(original, document) is valid
        assert accepts(schema, document) is valid


def test_a_reference_and_its_siblings_both_hold() -> None:
    """Beside a reference, a keyword the definition also asserts is kept apart (both must hold), a description
    is the referring side's, and data (a default, an enum) is copied as it is, references and all."""
    original = {
        "properties": {
            "short": {"$ref": "#/$defs/Name", "maxLength": 3, "description": "a short name"},
            "kind": {"enum": [{"$ref": "#/$defs/Name"}, "plain"], "default": {"$ref": "#/$defs/Name"}},
        },
        "$defs": {"Name": {"type": "string", "maxLength": 10, "description": "a name"}},
    }
    schema = compact(original)
    short = schema["properties"]["short"]
    assert short["description"] == "a short name"
    assert short["allOf"] == [{"type": "string", "maxLength": 10, "description": "a name"}]
    assert schema["properties"]["kind"] == original["properties"]["kind"]
    for document, valid in (
        ({"short": "abc"}, True),
        ({"short": "abcd"}, False),
        ({"short": 5}, False),
        ({"kind": "plain"}, True),
        ({"kind": {"$ref": "#/$defs/Name"}}, True),
        ({"kind": "other"}, False),
    ):
        assert accepts(original, document) is valid
        assert accepts(schema, document) is valid
