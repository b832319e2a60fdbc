"""Docs that cannot rot: every setting, tool, resource and command is documented, and the README's quick
start is the two commands CI runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from agent_memory.cli import build_parser
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
        documented = template.uri_template.rsplit("/", 1)[0] + "/{id}"
        assert f"`{documented}`" in REFERENCE


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
