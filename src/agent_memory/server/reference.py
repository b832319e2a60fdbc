"""The generated parts of ``docs/reference.md``: every tool, resource, setting and command, read from the code.

``agent-memory reference`` rewrites what lies between marker comments and leaves the prose around them alone::

    <!-- BEGIN GENERATED: tool:remember -->
    ...the arguments of `remember`, as its input schema states them...
    <!-- END GENERATED: tool:remember -->

The sections: ``tools`` (a summary: title, role needed, hints), ``tool:NAME`` (one per tool:
its arguments and the description the model reads), ``resources``, ``settings`` (``Settings``: variable,
flag, type, default) and ``commands`` (the argparse parser). Tools and resources come from the server built
exactly as ``serve`` builds it, listed without a database (listing touches none). A section that the code
has and the document lacks, or the other way round, is an error: a new tool needs its heading and prose.

``undocumented`` lists every tool, argument, resource, setting, command and option without a description.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from mcp.types import Resource, ResourceTemplate, Tool

from agent_memory.access import REQUIRED_ROLE
from agent_memory.runtime import Runtime, local_identity
from agent_memory.server.app import build_server
from agent_memory.settings import SECRET_FIELDS, Settings
from agent_memory.store.database import Database

MARKER: Final = re.compile(
    r"<!-- BEGIN GENERATED: (?P<name>[\w:.-]+) -->\n(?P<body>.*?)<!-- END GENERATED: (?P=name) -->", re.DOTALL
)
UPDATE_HINT: Final = "run `uv run agent-memory reference` to update it"


class LayoutError(ValueError):
    """The document cannot take the generated sections (a section is missing or no longer exists)."""


@dataclass(frozen=True)
class Catalogue:
    """Everything the reference describes, as the code states it."""

    tools: list[Tool]
    resources: list[Resource]
    templates: list[ResourceTemplate]
    parser: argparse.ArgumentParser
    common: argparse.ArgumentParser
    setting_flags: Mapping[str, str]


async def catalogue(
    parser: argparse.ArgumentParser, common: argparse.ArgumentParser, setting_flags: Mapping[str, str]
) -> Catalogue:
    """Tools and resources of the server ``serve`` builds (default settings: the environment plays no part),
    with the command line ``parser``, its options shared by every command (``common``) and the flag's ``dest``
    that sets each setting (``setting_flags``: setting → dest)."""
    settings = Settings.model_construct()
    # nothing is called while tools and resources are listed, so no database is opened (or needed)
    runtime = Runtime(db=cast(Database, None), settings=settings, identify=local_identity(settings))
    server = build_server(runtime)
    return Catalogue(
        tools=await server.list_tools(),
        resources=await server.list_resources(),
        templates=await server.list_resource_templates(),
        parser=parser,
        common=common,
        setting_flags=setting_flags,
    )


async def reference_command(
    output: Path,
    *,
    check: bool,
    parser: argparse.ArgumentParser,
    common: argparse.ArgumentParser,
    setting_flags: Mapping[str, str],
) -> int:
    """``agent-memory reference``: rewrite the generated sections of ``output`` (or, with ``check``, only
    say whether they are current: exit 1 when not). Exit 1 too when something has no description."""
    return write(output, await catalogue(parser, common, setting_flags), check=check)


def write(output: Path, cat: Catalogue, *, check: bool) -> int:
    """Rewrite (or with ``check`` only compare) the generated sections of ``output``; the exit status."""
    missing = undocumented(cat)
    if missing:
        print(f"agent-memory: without a description: {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        document = output.read_text(encoding="utf-8")
    except OSError as exc:
        print(
            f"agent-memory: cannot read {str(output)!r} ({exc.strerror}): run from the checkout or pass --output",
            file=sys.stderr,
        )
        return 2
    try:
        updated = update(document, sections(cat))
    except LayoutError as exc:
        print(f"agent-memory: {exc}", file=sys.stderr)
        return 1
    if updated == document:
        print(f"{output} is up to date")
        return 0
    if check:
        print(f"agent-memory: {output} is out of date: {UPDATE_HINT}", file=sys.stderr)
        return 1
    output.write_text(updated, encoding="utf-8")
    print(f"updated {output}")
    return 0


def sections(cat: Catalogue) -> dict[str, str]:
    """Each generated section's Markdown, by marker name."""
    made = {"tools": _tools_summary(cat.tools)}
    for tool in cat.tools:
        made[f"tool:{tool.name}"] = _tool(tool)
    made["resources"] = _resources(cat.resources, cat.templates)
    made["settings"] = _settings(cat)
    made["commands"] = _commands(cat)
    return made


def update(document: str, generated: Mapping[str, str]) -> str:
    """``document`` with the body of every marked section replaced by the generated one. Raises
    ``LayoutError`` when a generated section has no markers in ``document``, or the markers name a section
    that the code no longer has."""
    present = [match["name"] for match in MARKER.finditer(document)]
    missing = [name for name in generated if name not in present]
    if missing:
        names = ", ".join(missing)
        msg = (
            f"the reference has no place for {names}: add `<!-- BEGIN GENERATED: NAME -->` and "
            "`<!-- END GENERATED: NAME -->` lines where it belongs (a tool: under its `### NAME` heading and prose)"
        )
        raise LayoutError(msg)
    stale = [name for name in present if name not in generated]
    if stale:
        raise LayoutError(f"the reference has generated sections the code no longer has: {', '.join(stale)}")
    return MARKER.sub(lambda m: f"{_begin(m['name'])}\n{generated[m['name']]}{_end(m['name'])}", document)


def undocumented(cat: Catalogue) -> list[str]:
    """What has no description: tools, arguments (nested fields too), resources, settings, commands, options."""
    missing: list[str] = []
    for tool in cat.tools:
        if not (tool.description or "").strip():
            missing.append(f"tool {tool.name}")
        missing.extend(f"argument {tool.name}.{name}" for name, field, _ in _arguments(tool) if not _text(field))
    for resource in cat.resources:
        if not (resource.description or "").strip():
            missing.append(f"resource {resource.uri}")
    for template in cat.templates:
        if not (template.description or "").strip():
            missing.append(f"resource {template.uri_template}")
    missing.extend(f"setting {name}" for name, field in Settings.model_fields.items() if not field.description)
    for path, parser in _parsers(cat.parser):
        if not (parser.description or "").strip():
            missing.append(f"command {' '.join(path) or 'agent-memory'}")
        missing.extend(
            f"option {' '.join(path)} {_invocation(parser, action)}"
            for action in _options(parser)
            if not (action.help or "").strip()
        )
    return missing


# -- tools ---------------------------------------------------------------------------------------------------


def _tools_summary(tools: list[Tool]) -> str:
    rows = []
    for tool in tools:
        hints = tool.annotations
        flags = [
            label
            for label, on in (
                ("read-only", hints is not None and hints.read_only_hint),
                ("destructive", hints is not None and hints.destructive_hint),
                ("idempotent", hints is not None and hints.idempotent_hint),
            )
            if on
        ]
        rows.append(
            [f"[`{tool.name}`](#{tool.name})", tool.title or "", f"`{REQUIRED_ROLE[tool.name]}`", ", ".join(flags)]
        )
    return _table(["tool", "title", "role needed", "hints"], rows)


def _tool(tool: Tool) -> str:
    rows = [
        [f"`{name}`", _type(field), "yes" if required else "", _default(field), _text(field)]
        for name, field, required in _arguments(tool)
    ]
    description = (tool.description or "").strip()
    return (
        _table(["argument", "type", "required", "default", "meaning"], rows)
        + "\n<details><summary>The description the model reads</summary>\n\n"
        + description
        + "\n\n</details>\n"
    )


def _arguments(tool: Tool) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Each argument as (name, schema, required), an object's fields after it as ``name.field``."""
    schema = tool.input_schema
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        yield name, field, name in required
        reference = _ref(field)
        if reference is not None:
            nested = definitions[reference]
            inner = set(nested.get("required", []))
            for child, child_field in nested.get("properties", {}).items():
                yield f"{name}.{child}", child_field, child in inner


def _ref(field: Mapping[str, Any]) -> str | None:
    for option in [field, *field.get("anyOf", [])]:
        if "$ref" in option:
            return str(option["$ref"]).rsplit("/", 1)[-1]
    return None


# -- resources -----------------------------------------------------------------------------------------------


def _resources(resources: list[Resource], templates: list[ResourceTemplate]) -> str:
    rows = [[f"`{r.uri}`", r.name, f"`{r.mime_type}`", r.description or ""] for r in resources]
    rows += [[f"`{t.uri_template}`", t.name, f"`{t.mime_type}`", t.description or ""] for t in templates]
    return _table(["URI", "name", "content", "what"], rows)


# -- settings ------------------------------------------------------------------------------------------------


def _settings(cat: Catalogue) -> str:
    schema = Settings.model_json_schema()["properties"]
    flags = _flags(cat)
    rows = []
    for name, field in Settings.model_fields.items():
        variable = f"`AGENT_MEMORY_{name.upper()}`"
        if name in SECRET_FIELDS:
            variable += f" or `AGENT_MEMORY_{name.upper()}_FILE`"
        kind = _type(schema[name])
        if schema[name].get("type") == "array":
            kind = f"comma-separated {kind}"
        default = _default(schema[name]) or ("unset" if "default" in schema[name] else "—")
        rows.append([variable, flags.get(name, ""), kind, default, field.description or ""])
    return (
        "Each setting is read once at start from its variable (a `_FILE` variant names a file holding the "
        "secret) or from its flag, the flag winning; docs/configuration.md says more about each.\n\n"
        + _table(["variable", "flag", "type", "default", "meaning"], rows)
    )


def _flags(cat: Catalogue) -> dict[str, str]:
    """Setting → the flag that sets it, with the commands that take it (none named: every command)."""
    common = {action.dest for action in _options(cat.common)}
    where: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    for path, parser in _parsers(cat.parser):
        for action in _options(parser):
            spelled.setdefault(action.dest, action.option_strings[-1] if action.option_strings else action.dest)
            if action.dest not in common:
                where.setdefault(action.dest, []).append(" ".join(path))
    found = {}
    for setting, dest in cat.setting_flags.items():
        if dest in spelled:
            commands = "" if dest in common else f" ({', '.join(where[dest])})"
            found[setting] = f"`{spelled[dest]}`{commands}"
    return found


# -- commands ------------------------------------------------------------------------------------------------


def _commands(cat: Catalogue) -> str:
    common = {action.dest for action in _options(cat.common)}
    parts = [
        "Options every command that touches the database takes (marked *common options* below):\n\n"
        + _options_table(cat.common, set())
    ]
    for path, parser in _parsers(cat.parser):
        if not path:
            continue
        heading = "###" if len(path) == 1 else "####"
        text = f"{heading} `agent-memory {' '.join(path)}`\n\n{_paragraph(parser.description)}\n"
        own = [action for action in _options(parser) if action.dest not in common]
        if own:
            text += "\n" + _options_table(parser, common)
        for group in parser._mutually_exclusive_groups:
            if group.required:
                names = ", ".join(f"`{_invocation(parser, action)}`" for action in group._group_actions)
                text += f"\nExactly one of {names} is required.\n"
        if any(action.dest in common for action in _options(parser)):
            text += "\nTakes the *common options*.\n"
        parts.append(text)
    return "\n".join(parts)


def _options_table(parser: argparse.ArgumentParser, skip: set[str]) -> str:
    rows = [
        [
            f"`{_invocation(parser, action)}`",
            ("(required) " if action.required and action.option_strings else "") + _paragraph(action.help),
        ]
        for action in _options(parser)
        if action.dest not in skip
    ]
    return _table(["option", "meaning"], rows)


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The parser and every subcommand's, depth first, in the order they were added."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction | argparse._VersionAction)
    ]


def _invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._format_action_invocation(action)


# -- Markdown ------------------------------------------------------------------------------------------------


def _type(field: Mapping[str, Any]) -> str:
    """A JSON schema as a short phrase: ``string, 1–128 chars``, ``one of `a`, `b` ``, ``list of string``."""
    options = [option for option in field.get("anyOf", [field]) if option.get("type") != "null"]
    if len(options) > 1:
        return " or ".join(_type(option) for option in options)
    return _phrase(options[0] if options else field)


def _phrase(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return "object (fields below)"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "string":
        formats = {"date-time": "date-time (ISO 8601)", "password": "secret", "path": "path"}
        base = formats.get(schema.get("format", ""), "string")
        return _join(base, _bounds(schema, "Length", " chars"), _pattern(schema))
    if kind in {"integer", "number"}:
        return _join(kind, _bounds(schema, "imum", ""))
    if kind == "array":
        return _join(f"list of {_type(schema.get('items', {}))}", _bounds(schema, "Items", " items"))
    return str(kind)


def _bounds(schema: Mapping[str, Any], suffix: str, unit: str) -> str:
    low, high = schema.get(f"min{suffix}"), schema.get(f"max{suffix}")
    if suffix == "imum" and low is None and "exclusiveMinimum" in schema:
        return f"> {_number(schema['exclusiveMinimum'])}{unit}"
    if low is not None and high is not None:
        return f"{_number(low)}–{_number(high)}{unit}"
    if high is not None:
        return f"≤ {_number(high)}{unit}"
    if low is not None and not (suffix != "imum" and low == 0):
        return f"≥ {_number(low)}{unit}"
    return ""


def _pattern(schema: Mapping[str, Any]) -> str:
    return f"matching `{schema['pattern']}`" if "pattern" in schema else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _join(*parts: str) -> str:
    return ", ".join(part for part in parts if part)


def _default(field: Mapping[str, Any]) -> str:
    value = field.get("default")
    if value is None:
        return ""
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def _text(field: Mapping[str, Any]) -> str:
    return _paragraph(field.get("description"))


def _paragraph(text: str | None) -> str:
    """One line of Markdown: whitespace folded, pipes escaped (it may stand in a table cell)."""
    return " ".join((text or "").split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("\n", " ") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED: {name} -->"


def _end(name: str) -> str:
    return f"<!-- END GENERATED: {name} -->"
