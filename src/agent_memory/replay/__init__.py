"""The scenario harness: replay recorded transcripts through a real MCP client and check what the server
would hand the model (``agent-memory replay``; the format is in ``transcript.py`` and docs/scenarios.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import anyio

from agent_memory.replay.runner import Runner, ScenarioReport
from agent_memory.replay.targets import RemoteHttpTarget, SpawnedHttpTarget, StdioTarget, Target
from agent_memory.replay.transcript import TranscriptError, load
from agent_memory.settings import Settings
from agent_memory.store.connect import open_database
from agent_memory.store.database import Database


def transcript_files(paths: Sequence[Path]) -> list[Path]:
    """The files named, with a folder standing for the ``*.json`` files in it, sorted."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return files


async def replay(
    paths: Sequence[Path],
    settings: Settings,
    *,
    transport: str = "stdio",
    url: str | None = None,
    token: str | None = None,
    jwt_secret: str | None = None,
    report_file: Path | None = None,
) -> int:
    """Replay every transcript; print one line each and a closing ``N passed, N failed``; 1 on any failure."""
    files = transcript_files(paths)
    if url is not None:
        if settings.database_url is None:
            return await _replay(files, RemoteHttpTarget(url, token=token, jwt_secret=jwt_secret), None, report_file)
        async with open_database(settings) as db:
            return await _replay(files, RemoteHttpTarget(url, token=token, jwt_secret=jwt_secret), db, report_file)
    async with open_database(settings) as db:
        target: Target = StdioTarget(db.dsn) if transport == "stdio" else SpawnedHttpTarget(db.dsn)
        return await _replay(files, target, db, report_file)


async def _replay(files: list[Path], target: Target, db: Database | None, report_file: Path | None) -> int:
    reports: list[ScenarioReport] = []
    broken: list[str] = []
    runner = Runner(target, db)
    try:
        for path in files:
            try:
                transcript = load(path)
            except TranscriptError as exc:
                broken.append(str(exc))
                print(f"ERROR {exc}", flush=True)
                continue
            report = await runner.run(transcript, path)
            reports.append(report)
            print(_line(report), flush=True)
    finally:
        await target.close()
    passed = sum(r.passed for r in reports)
    failed = len(reports) - passed + len(broken)
    print(f"{passed} passed, {failed} failed", flush=True)
    if report_file is not None:
        document = {
            "transport": target.name,
            "passed": passed,
            "failed": failed,
            "invalid_files": broken,
            "scenarios": [asdict(r) for r in reports],
        }
        await anyio.Path(report_file).write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    return 0 if failed == 0 else 1


def _line(report: ScenarioReport) -> str:
    seconds = report.duration_ms / 1000
    head = f"{report.id} {report.name} ({len(report.steps)} steps, {seconds:.1f} s, {report.transport})"
    if report.passed:
        return f"PASS {head}"
    failure = report.failure or {}
    return f"FAIL {head}\n     {failure.get('file')} step {failure.get('step')}: {failure.get('message')}"


__all__ = ["replay", "transcript_files"]
