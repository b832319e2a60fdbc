"""Docs that cannot rot: every setting, tool, resource and command is documented, the generated parts of
docs/reference.md are what the code says, and the README's quick start is the two commands CI runs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.types import Tool

from agent_memory.cli import build_parser, common_options, reference_flags
from agent_memory.server.reference import (
    UPDATE_HINT,
    Catalogue,
    LayoutError,
    catalogue,
    sections,
    undocumented,
    update,
)
from agent_memory.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    """Each setting's environment variable appears in docs/configuration.md."""
    assert f"`AGENT_MEMORY_{field.upper()}`" in CONFIGURATION


@pytest.mark.anyio
async def test_every_tool_and_resource_is_documented(client: Client) -> None:
    """Each tool's name and arguments, and each resource URI, appear in docs/reference.md."""
    for tool in (await client.list_tools()).tools:
        assert f"### `{tool.name}`" in REFERENCE
        for argument in tool.input_schema.get("properties", {}):
            assert f"`{argument}`" in REFERENCE, f"{tool.name}.{argument}"
    for resource in (await client.list_resources()).resources:
        assert f"`{resource.uri}`" in REFERENCE
    for template in (await client.list_resource_templates()).resource_templates:
        assert f"`{template.uri_template}`" in REFERENCE


def test_every_command_is_documented() -> None:
    """Each subcommand of the CLI appears in docs/reference.md."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        nested = sub._subparsers._group_actions[0].choices if sub._subparsers else {None: None}
        for action in nested:
            assert f"agent-memory {name}{'' if action is None else ' ' + action}" in REFERENCE


def test_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    """The README quick start is exactly `uv run agent-memory serve` and `uv run pytest`; .ci/run runs the
    latter (on the embedded PostgreSQL and on a server)."""
    quick_start = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert quick_start.strip().splitlines() == ["uv run agent-memory serve", "uv run pytest"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.count("uv run pytest") == 2


@pytest.fixture(scope="module")
def code() -> Catalogue:
    """What the code says: the tools and resources of the server, the settings and the command line."""
    return anyio.run(catalogue, build_parser(), common_options(), reference_flags())


def test_the_reference_is_what_the_code_says(code: Catalogue) -> None:
    """Every generated section of docs/reference.md equals what `agent-memory reference` writes today."""
    assert update(REFERENCE, sections(code)) == REFERENCE, f"docs/reference.md is out of date: {UPDATE_HINT}"


def test_everything_has_a_description(code: Catalogue) -> None:
    """No tool, argument (nested fields too), resource, setting, command or option lacks a description."""
    assert undocumented(code) == []


@pytest.mark.anyio
async def test_the_reference_lists_what_a_client_sees(client: Client, code: Catalogue) -> None:
    """The reference reads the server without a database; a real client of a running server sees the same
    tools (names, descriptions, input schemas) and resources."""
    listed = (await client.list_tools()).tools
    assert [(t.name, t.description, t.input_schema) for t in listed] == [
        (t.name, t.description, t.input_schema) for t in code.tools
    ]
    assert [r.uri for r in (await client.list_resources()).resources] == [r.uri for r in code.resources]
    templates = (await client.list_resource_templates()).resource_templates
    assert [(t.uri_template, t.description) for t in templates] == [
        (t.uri_template, t.description) for t in code.templates
    ]


def test_a_missing_description_is_caught(code: Catalogue) -> None:
    """An argument or an option without a description is reported by name (so the test above can fail)."""
    tool = Tool(name="remember", description="x", input_schema={"type": "object", "properties": {"mute": {}}})
    parser = argparse.ArgumentParser(prog="agent-memory", description="d")
    commands = parser.add_subparsers()
    quiet = commands.add_parser("quiet", description="d")
    quiet.add_argument("--silent")
    broken = Catalogue(
        tools=[tool],
        resources=code.resources,
        templates=code.templates,
        parser=parser,
        common=code.common,
        setting_flags=code.setting_flags,
    )
    assert undocumented(broken) == ["argument remember.mute", "option quiet --silent SILENT"]


def test_sections_are_replaced_and_mismatches_refused() -> None:
    """Only the text between a section's markers changes; a section without markers, or markers the code
    has no section for, is an error naming it."""
    document = "prose\n<!-- BEGIN GENERATED: a -->\nold\n<!-- END GENERATED: a -->\nmore prose\n"
    assert update(document, {"a": "new\n"}) == (
        "prose\n<!-- BEGIN GENERATED: a -->\nnew\n<!-- END GENERATED: a -->\nmore prose\n"
    )
    with pytest.raises(LayoutError, match="no place for b"):
        update(document, {"a": "new\n", "b": "x\n"})
    with pytest.raises(LayoutError, match="no longer has: a"):
        update(document, {})


@pytest.mark.slow
def test_the_reference_command_checks_and_rewrites(tmp_path: Path) -> None:
    """`agent-memory reference --check` fails on a stale file and says how to update it; without --check it
    rewrites the generated sections back to what the code says."""
    stale = tmp_path / "reference.md"
    stale.write_text(REFERENCE.replace("The event's content", "The old content", 1), encoding="utf-8")
    executable = str(Path(sys.executable).parent / "agent-memory")

    def reference(*args: str) -> subprocess.CompletedProcess[str]:
        command = [executable, "reference", "--output", str(stale), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    checked = reference("--check")
    assert checked.returncode == 1
    assert "uv run agent-memory reference" in checked.stderr
    written = reference()
    assert written.returncode == 0, written.stderr
    assert stale.read_text(encoding="utf-8") == REFERENCE
    assert reference("--check").returncode == 0
