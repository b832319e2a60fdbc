"""Dependencies point one way (STYLE.md): server → tools/resources → domain → store.

The test reads every module's imports (with ``ast``, without importing anything) and fails on a wrong arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "agent_memory"

# layer → imports it must never make (prefix match on the imported module name)
FORBIDDEN = {
    "store": ("mcp", "starlette", "uvicorn", "agent_memory.server", "agent_memory.tools", "agent_memory.resources"),
    "tools": ("asyncpg", "starlette", "agent_memory.server", "agent_memory.resources"),
    "resources": ("asyncpg", "starlette", "agent_memory.server", "agent_memory.tools"),
    "domain": (
        "mcp",
        "starlette",
        "uvicorn",
        "asyncpg",
        "agent_memory.server",
        "agent_memory.tools",
        "agent_memory.resources",
    ),
}
DOMAIN_EXEMPT = {"cli.py"}  # the entry point wires everything


def _layer(path: Path) -> str | None:
    """``store``, ``tools``, ``resources``; ``None`` for the wiring (``server/``, the CLI); else the domain
    (top-level modules and domain packages such as ``context/``)."""
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) > 1:
        top = relative.parts[0]
        if top in {"server", "replay"}:  # wiring, and the harness (an MCP client)
            return None
        return top if top in FORBIDDEN else "domain"
    return None if relative.name in DOMAIN_EXEMPT else "domain"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_module_imports_point_one_way(path: Path) -> None:
    """No module imports from a layer above it or a library its layer must not touch."""
    layer = _layer(path)
    if layer is None:
        return
    wrong = [
        name
        for name in _imports(path)
        for banned in FORBIDDEN[layer]
        if name == banned or name.startswith(banned + ".")
    ]
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {wrong}"


def test_the_rule_catches_a_wrong_arrow(tmp_path: Path) -> None:
    """The checker itself sees an import it must forbid (so the test above cannot pass vacuously)."""
    module = tmp_path / "bad.py"
    module.write_text("import asyncpg\nfrom mcp.server import x\n", encoding="utf-8")
    assert _imports(module) == ["asyncpg", "mcp.server"]
    assert len(MODULES) > 20
