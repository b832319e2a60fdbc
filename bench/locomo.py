"""Retrieval quality on LoCoMo: replay each conversation through the real MCP server, ask every question with
``recall``, and score the evidence it returns against the benchmark's evidence turns.

    uv run python bench/locomo.py [DATA_DIR] [--transport stdio|http] [--database-url URL] [--out DIR]

DATA_DIR holds ``turns.jsonl`` and ``questions.jsonl`` in the LoCoMo format described by its README (default
``../shared/data/locomo-dev``); the data is read from there and never copied. One tenant per conversation,
one ``remember`` per turn (text ``"{speaker}: {text}"`` plus the image caption, time = session start + seq
seconds, the ``dia_id`` as metadata only), then ``agent-memory reindex --embeddings`` (the backfill; the
background embedder would do the same, just not at a moment the benchmark can wait for), then one ``recall``
per question with the question text only, in a session of its own (so the ``recent`` section stays empty and
everything found is evidence). Returned evidence items map back to turns through the event ids ``remember``
returned (a duplicate turn maps to the event it was linked to).

Prints recall@5/10/20, all@10 and session recall@10 per category (adversarial apart), recall latency p50/p95
and tokens returned per question; writes ``report.json`` and ``run.jsonl`` (``{"qid", "retrieved"}`` per
line) into ``--out``. Without ``--database-url`` a throw-away embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
from mcp import Client
from mcp.types import CallToolResult

from agent_memory.replay.targets import SpawnedHttpTarget, StdioTarget, Target
from agent_memory.store.embedded import EmbeddedPostgres

KS = (5, 10, 20)
HEADLINE = (1, 2, 3, 4)
QUESTION_SESSION = "locomo-questions"
_RETRY_AFTER = re.compile(r"retry_after=([0-9.]+)")


@dataclass
class Conversation:
    conv: str
    turns: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)


def load(data_dir: Path, limit: int | None) -> list[Conversation]:
    convs: dict[str, Conversation] = {}
    with (data_dir / "turns.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            turn = json.loads(line)
            convs.setdefault(turn["conv"], Conversation(turn["conv"])).turns.append(turn)
    with (data_dir / "questions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            question = json.loads(line)
            convs[question["conv"]].questions.append(question)
    chosen = list(convs.values())[:limit] if limit else list(convs.values())
    for conv in chosen:
        conv.turns.sort(key=lambda t: t["seq"])
    return chosen


def turn_text(turn: dict[str, Any]) -> str:
    text = f"{turn['speaker']}: {turn['text']}"
    return f"{text} [shares {turn['image_caption']}]" if turn.get("image_caption") else text


def turn_time(turn: dict[str, Any]) -> str:
    start = datetime.fromisoformat(turn["timestamp"])
    return (start + timedelta(seconds=turn["seq"])).isoformat() + "Z"


async def replay(target: Target, conv: Conversation) -> dict[str, list[str]]:
    """Remember every turn; returns event id -> the dia_ids it stands for."""
    client = await target.client(tenant(conv), "locomo")
    turns_of: dict[str, list[str]] = defaultdict(list)
    for turn in conv.turns:
        arguments = {
            "text": turn_text(turn),
            "session_id": f"session-{turn['session']}",
            "actor": turn["speaker"],
            "at": turn_time(turn),
            "metadata": {"dia_id": turn["dia_id"]},
        }
        result = await call(client, "remember", arguments)
        if result.is_error or result.structured_content is None:
            raise RuntimeError(f"remember failed for {conv.conv} {turn['dia_id']}: {result.content}")
        receipt = result.structured_content["events"][0]
        turns_of[receipt.get("duplicate_of") or receipt["id"]].append(turn["dia_id"])
    return turns_of


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """Call ``tool``, waiting as told when the server's rate limit refuses the call (as any client would)."""
    while True:
        result = await client.call_tool(tool, arguments)
        text = " ".join(getattr(part, "text", "") for part in result.content)
        if not (result.is_error and "rate_limited" in text):
            return result
        wait = _RETRY_AFTER.search(text)
        await anyio.sleep(float(wait[1]) + 0.01 if wait else 0.1)


def tenant(conv: Conversation) -> str:
    return f"locomo-{conv.conv}".replace("#", "-")


@dataclass
class Answer:
    qid: str
    category: int
    evidence: list[str]
    retrieved: list[str]
    latency_ms: float
    tokens: int
    provenance: dict[str, Any]


async def ask(target: Target, conv: Conversation, turns_of: dict[str, list[str]], budget: int) -> list[Answer]:
    client = await target.client(tenant(conv), "locomo")
    known = {t["dia_id"] for t in conv.turns}
    answers = []
    for question in conv.questions:
        started = time.perf_counter()
        result = await call(
            client, "recall", {"query": question["question"], "session_id": QUESTION_SESSION, "budget_tokens": budget}
        )
        latency = (time.perf_counter() - started) * 1000
        if result.is_error or result.structured_content is None:
            raise RuntimeError(f"recall failed for {question['qid']}: {result.content}")
        bundle = result.structured_content
        evidence = next(s for s in bundle["sections"] if s["name"] == "evidence")
        retrieved: list[str] = []
        for item in evidence["items"]:
            for dia_id in turns_of.get(item["refs"][0], []):
                if dia_id not in retrieved:
                    retrieved.append(dia_id)
        answers.append(
            Answer(
                qid=question["qid"],
                category=int(question["category"]),
                evidence=[e for e in dict.fromkeys(question["evidence"]) if e in known],
                retrieved=retrieved,
                latency_ms=latency,
                tokens=int(bundle["token_used_est"]),
                provenance={k: v for k, v in bundle["provenance"].items() if k not in {"query_terms"}},
            )
        )
    return answers


def session_of(dia_id: str) -> str:
    return dia_id.split(":", 1)[0]


def scores(answer: Answer) -> dict[str, float]:
    wanted = set(answer.evidence)
    got = {f"R@{k}": len(wanted & set(answer.retrieved[:k])) / len(wanted) for k in KS}
    got["all@10"] = float(wanted <= set(answer.retrieved[:10]))
    sessions = {session_of(e) for e in wanted}
    got["sessR@10"] = len(sessions & {session_of(r) for r in answer.retrieved[:10]}) / len(sessions)
    return got


def summarise(answers: list[Answer]) -> dict[str, Any]:
    by_category: dict[str, list[dict[str, float]]] = defaultdict(list)
    for answer in answers:
        if answer.evidence:
            by_category[str(answer.category)].append(scores(answer))
            if answer.category in HEADLINE:
                by_category["1-4"].append(scores(answer))
    table = {
        category: {"n": len(rows), **{m: round(statistics.fmean(r[m] for r in rows), 4) for m in rows[0]}}
        for category, rows in sorted(by_category.items(), key=lambda item: (item[0] == "1-4", item[0]))
    }
    latencies = sorted(a.latency_ms for a in answers)
    server = sorted(float(a.provenance.get("timings_ms", {}).get("total_ms", 0.0)) for a in answers)
    tokens = [a.tokens for a in answers]
    pools = [a.provenance.get("candidate_pool", 0) for a in answers]
    return {
        "categories": table,
        "latency_ms": {"p50": round(percentile(latencies, 50), 2), "p95": round(percentile(latencies, 95), 2)},
        "server_ms": {"p50": round(percentile(server, 50), 2), "p95": round(percentile(server, 95), 2)},
        "tokens_per_question": {"mean": round(statistics.fmean(tokens), 1), "median": statistics.median(tokens)},
        "candidate_pool_mean": round(statistics.fmean(pools), 1),
        "questions": len(answers),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return values[index]


NAMES = {"1": "multi-hop", "2": "temporal", "3": "open-domain", "4": "single-hop", "5": "adversarial", "1-4": "1-4"}


def render(summary: dict[str, Any]) -> str:
    metrics = ["R@5", "R@10", "R@20", "all@10", "sessR@10"]
    lines = [f"{'category':<14}{'n':>5}" + "".join(f"{m:>10}" for m in metrics)]
    for category, row in summary["categories"].items():
        lines.append(f"{NAMES[category]:<14}{row['n']:>5}" + "".join(f"{row[m]:>10.3f}" for m in metrics))
    lat, tok = summary["latency_ms"], summary["tokens_per_question"]
    inside = summary["server_ms"]
    lines.append(
        f"recall latency p50 {lat['p50']} ms, p95 {lat['p95']} ms (inside the server: p50 {inside['p50']} ms, "
        f"p95 {inside['p95']} ms); tokens returned per question: {tok}"
    )
    return "\n".join(lines)


@contextmanager
def database(url: str | None, keep: bool) -> Iterator[str]:
    """A fresh database for this run: on the server of ``url``, or in a throw-away embedded PostgreSQL."""
    embedded, data_dir = None, None
    if url is None:
        data_dir = Path(tempfile.mkdtemp(prefix="am-locomo-", dir="/tmp"))
        data_dir.chmod(0o755)
        embedded = EmbeddedPostgres(data_dir)
        embedded.acquire()
        url = embedded.dsn("postgres")
    name = f"am_locomo_{os.getpid()}"
    anyio.run(_admin, url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        if not keep:
            anyio.run(_admin, url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if embedded is not None:
            embedded.release()
            shutil.rmtree(data_dir or "", ignore_errors=True)


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def backfill(url: str) -> float:
    """``agent-memory reindex --embeddings --all-tenants``: embed every chunk that lacks a vector."""
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    command = [sys.executable, "-m", "agent_memory", "reindex", "--embeddings", "--all-tenants"]
    subprocess.run([*command, "--database-url", url], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    conversations = load(args.data, args.limit)
    target: Target = SpawnedHttpTarget(url) if args.transport == "http" else StdioTarget(url)
    try:
        started = time.perf_counter()
        maps = {}
        for conv in conversations:
            maps[conv.conv] = await replay(target, conv)
            print(f"replayed {conv.conv}: {len(conv.turns)} turns", file=sys.stderr)
        replay_s = time.perf_counter() - started
        embed_s = 0.0 if args.no_embeddings else await anyio.to_thread.run_sync(backfill, url)
        answers = []
        for conv in conversations:
            answers.extend(await ask(target, conv, maps[conv.conv], args.budget))
    finally:
        await target.close()
    summary = summarise(answers)
    summary.update(
        transport=args.transport,
        budget_tokens=args.budget,
        embeddings=not args.no_embeddings,
        replay_seconds=round(replay_s, 1),
        backfill_seconds=round(embed_s, 1),
        conversations=[c.conv for c in conversations],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with (args.out / "run.jsonl").open("w", encoding="utf-8") as handle:
        for answer in answers:
            handle.write(json.dumps({"qid": answer.qid, "retrieved": answer.retrieved}) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/data/locomo-dev"))
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--database-url", help="a server whose user may create databases (default: embedded)")
    parser.add_argument("--budget", type=int, default=65_000, help="recall budget_tokens (default 65,000)")
    parser.add_argument("--limit", type=int, help="only the first N conversations")
    parser.add_argument("--no-embeddings", action="store_true", help="skip the embedding backfill (lexical only)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="where report.json and run.jsonl go")
    args = parser.parse_args()
    with database(args.database_url, args.keep) as url:
        summary = anyio.run(run, args, url)
    print(render(summary))


if __name__ == "__main__":
    main()
