"""The acceptance scenarios A1–A12 (PRODUCT.md §6), each replayed on a fresh database over stdio and over
streamable HTTP through the real MCP client."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_memory.replay.runner import Runner
from agent_memory.replay.targets import SpawnedHttpTarget, StdioTarget, Target
from agent_memory.replay.transcript import load
from agent_memory.store.database import Database

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.json"))


def test_all_twelve_scenarios_are_there() -> None:
    """A1 to A12 each have a transcript."""
    assert [load(path).id for path in SCENARIOS] == [f"A{i}" for i in range(1, 13)]


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario(path: Path, transport: str, database_url: str, db: Database) -> None:
    """The scenario's every expectation holds."""
    target: Target = StdioTarget(database_url) if transport == "stdio" else SpawnedHttpTarget(database_url)
    try:
        report = await Runner(target, db).run(load(path), path)
    finally:
        await target.close()
    assert report.passed, report.failure
