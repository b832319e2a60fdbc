"""The replay harness itself: transcript validation, the clock, substitution, reports and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent_memory.replay.runner import Runner, moment
from agent_memory.replay.targets import StdioTarget
from agent_memory.replay.transcript import TranscriptError, load
from agent_memory.store.database import Database

PASSING = {
    "id": "H1",
    "name": "harness smoke",
    "principle": "P8: behaviour proven by replay",
    "steps": [
        {"tool": "remember", "args": {"text": "The budget is 32K tokens.", "kind": "decision"}, "as": "d1"},
        {
            "tool": "supersede_decision",
            "args": {"decision_id": "${d1.events.0.decision_id}", "text": "The budget is 65K tokens."},
            "at": "+2d",
            "as": "d2",
        },
        {
            "tool": "recall",
            "args": {"query": "what is the budget now?"},
            "expect": [
                {"section": "decisions", "contains": "65K"},
                {"section": "decisions", "has_ref": "${d2}"},
                {"omitted": "superseded", "id": "${d1.events.0.decision_id}"},
            ],
        },
        {
            "tool": "remember",
            "args": {"text": "x", "refs": ["evt_01M8G6QWH5DRT8XFQ9KRMF7238"]},
            "expect": [{"error": "not_found"}],
        },
        {
            "store": [
                {"present": "65K tokens"},
                {"absent": "a phrase nobody wrote"},
                {"count": "decisions", "at_least": 2},
            ]
        },
    ],
}


def _write(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("{not json", "line 1 column 2"),
        ({"id": "X", "name": "n", "principle": "p", "steps": [{"tool": "recall", "read": "memory://rules"}]}, "step 0"),
        ({"id": "X", "name": "n", "principle": "p", "steps": [{"tool": "forget", "args": {}}]}, "step 0: tool"),
        ({"id": "X", "name": "n", "principle": "p", "steps": [{"control": "reboot"}]}, "step 0: control"),
        ({"id": "X", "name": "n", "steps": [{"control": "restart"}]}, "principle"),
        (
            {"id": "X", "name": "n", "principle": "p", "steps": [{"use": {"tenant": "bad tenant!"}}]},
            "step 0: use.tenant",
        ),
    ],
)
def test_bad_transcripts_name_the_file_step_and_field(tmp_path: Path, data: object, says: str) -> None:
    """A malformed transcript is refused with the file, the step and the field."""
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    with pytest.raises(TranscriptError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert says in str(caught.value)


def test_the_clock_moves_by_relative_and_absolute_times() -> None:
    """`+14d`, `-2h` move from the current time; ISO times set it; anything else is an error."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    assert moment("+14d", now) == now + timedelta(days=14)
    assert moment("-2h", now) == now - timedelta(hours=2)
    assert moment("+1.5w", now) == now + timedelta(weeks=1.5)
    assert moment("2026-01-02T03:04:05Z", now) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a relative time"):
        moment("next week", now)


@pytest.mark.anyio
async def test_a_passing_and_a_failing_transcript(database_url: str, db: Database, tmp_path: Path) -> None:
    """The harness passes a correct transcript and fails a wrong one at the right step, with the expectation
    and what was found."""
    target = StdioTarget(database_url)
    runner = Runner(target, db)
    try:
        good = await runner.run(load(_write(tmp_path, "good.json", PASSING)), tmp_path / "good.json")
        wrong = {**PASSING, "id": "H2"}
        wrong["steps"] = [
            *PASSING["steps"][:2],
            {"tool": "recall", "args": {"query": "budget"}, "expect": [{"section": "decisions", "contains": "99K"}]},
        ]  # type: ignore[index]
        bad = await runner.run(load(_write(tmp_path, "bad.json", wrong)), tmp_path / "bad.json")
    finally:
        await target.close()
    assert good.passed, good.failure
    assert all(step.latency_ms >= 0 for step in good.steps)
    assert not bad.passed
    assert bad.failure is not None
    assert bad.failure["step"] == 2
    assert "99K" in bad.failure["message"]
    assert "65K" in bad.failure["message"]


def test_the_command_prints_lines_a_summary_and_a_report(database_url: str, tmp_path: Path) -> None:
    """`agent-memory replay` prints PASS/FAIL per scenario and `N passed, N failed`, writes the JSON
    report, and exits 1 when anything failed (including an invalid file)."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    _write(folder, "good.json", PASSING)
    (folder / "broken.json").write_text("[]", encoding="utf-8")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env["AGENT_MEMORY_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "agent_memory", "replay", str(folder), "--report", str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1
    assert any(line.startswith("PASS H1 harness smoke") for line in lines)
    assert any(line.startswith("ERROR") and "broken.json" in line for line in lines)
    assert lines[-1] == "1 passed, 1 failed"
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["passed"] == 1
    assert document["scenarios"][0]["steps"][0]["latency_ms"] >= 0
