"""Load: N concurrent agents, each its own MCP client over streamable HTTP with its own token, against one real
``agent-memory serve --http`` for a set time.

    uv run python bench/load.py [--agents 10] [--duration 60] [--database-url URL] [--out FILE]

The mix per agent: about 60% ``remember`` (chat turns of varied length, and tool output up to ~12 KB), 30%
``recall`` (half continuing the session, half asking a question), 10% decisions, supersessions, handoffs and
resource reads. Rate limits are lifted for the run. Prints p50/p95/p99/max per call kind, throughput, errors
(there should be none), PostgreSQL connections of the server (sampled each second: they must stay within the
pool, 20 by default) and the server's resident memory at start, middle and end; writes the same as JSON.
Without ``--database-url`` a throw-away embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx2
from _common import APPLICATION, database, http_server, percentiles, rss_bytes, write_report
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent_memory.tokens import mint

WORDS = [
    "deploy",
    "billing",
    "invoice",
    "refactor",
    "migration",
    "schema",
    "index",
    "latency",
    "cache",
    "tenant",
    "budget",
    "token",
    "recall",
    "decision",
    "handoff",
    "review",
    "customer",
    "release",
    "rollback",
    "queue",
    "worker",
    "retry",
    "timeout",
    "payment",
    "refund",
    "audit",
    "metrics",
    "alert",
    "dashboard",
    "staging",
    "production",
    "feature",
    "flag",
    "experiment",
    "storage",
    "backup",
    "restore",
]


@dataclass
class Stats:
    """Latencies (seconds) and errors per call kind."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def summary(self, seconds: float) -> dict[str, Any]:
        kinds = {}
        for kind, values in sorted(self.latencies.items()):
            kinds[kind] = {"calls": len(values), "errors": len(self.errors[kind]), **percentiles(values)}
        calls = sum(len(v) for v in self.latencies.values())
        return {
            "calls": calls,
            "throughput_per_s": round(calls / seconds, 1),
            "errors": sum(len(v) for v in self.errors.values()),
            "error_samples": {kind: errors[:3] for kind, errors in self.errors.items() if errors},
            "by_kind": kinds,
        }


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


class Agent:
    """One simulated agent: its own client and token, a session, the ids it has seen."""

    def __init__(self, client: Client, name: str, tenant: str, seed: int) -> None:
        self.client, self.name, self.tenant = client, name, tenant
        self.rng = random.Random(seed)  # noqa: S311 - load generation, not secrets
        self.session = f"{name}-session"
        self.decisions: list[str] = []

    def next_call(self) -> tuple[str, str, dict[str, Any]]:
        """(kind, tool or resource, arguments) drawn from the mix."""
        roll, text = self.rng.random(), sentence(self.rng, self.rng.randint(8, 80))
        if not self.decisions and 0.94 <= roll < 0.96:
            roll = 0.90  # nothing to supersede yet: decide instead
        mix: list[tuple[float, str, str, dict[str, Any]]] = [
            (0.45, "remember", "remember", {"text": text, "session_id": self.session}),
            (0.60, "remember_tool_output", "remember", {"text": self._tool_output(), "kind": "tool_result"}),
            (0.75, "recall_continue", "recall", {"query": "", "session_id": self.session}),
            (0.90, "recall_query", "recall", {"query": sentence(self.rng, 6), "session_id": self.session}),
            (0.94, "decision", "remember", {"text": "We decide: " + text, "kind": "decision"}),
            (0.96, "supersede", "supersede_decision", {"decision_id": self._latest_decision(), "text": text}),
            (0.98, "handoff", "handoff_packet", {"to_agent": f"{self.name}-peer", "task": text}),
            (1.01, "resource", "memory://rules", {}),
        ]
        return next((kind, tool, args) for limit, kind, tool, args in mix if roll < limit)

    def _tool_output(self) -> str:
        return "\n".join(sentence(self.rng, 20) for _ in range(self.rng.randint(5, 80)))

    def _latest_decision(self) -> str:
        return self.decisions[-1] if self.decisions else ""

    async def call(self, tool: str, arguments: dict[str, Any]) -> None:
        if tool.startswith("memory://"):
            await self.client.read_resource(tool)
            return
        result = await self.client.call_tool(tool, arguments)
        if result.is_error:
            text = result.content[0].text if result.content else "error"  # type: ignore[union-attr]
            raise RuntimeError(text)
        structured = result.structured_content or {}
        if tool == "remember" and arguments.get("kind") == "decision":
            self.decisions.append(structured["events"][0]["decision_id"])
        if tool == "supersede_decision":
            self.decisions[-1] = structured["decision"]["id"]  # the new head of the chain


async def run_agent(agent: Agent, stats: Stats, deadline: float) -> None:
    while time.monotonic() < deadline:
        kind, tool, arguments = agent.next_call()
        started = time.perf_counter()
        try:
            await agent.call(tool, arguments)
        except Exception as exc:
            stats.errors[kind].append(f"{exc.__class__.__name__}: {exc}"[:300])
        stats.latencies[kind].append(time.perf_counter() - started)


async def connections(dsn: str) -> Callable[[], Any]:
    conn = await asyncpg.connect(dsn)

    async def count() -> int:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION
        )
        return value

    count.close = conn.close  # type: ignore[attr-defined]
    return count


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with database(args.database_url) as dsn, http_server(dsn) as server:
        return await drive(args, server.base_url, server.jwt_secret, dsn, server.process.pid)


async def drive(args: argparse.Namespace, base: str, secret: str, dsn: str, pid: int) -> dict[str, Any]:
    stats = Stats()
    count = await connections(dsn)
    samples: list[int] = []
    rss: dict[str, int | None] = {"start": rss_bytes(pid)}
    tenants = max(1, args.agents // 10)
    async with anyio.create_task_group() as clients:
        agents: list[Agent] = []
        ready = anyio.Event()
        done = anyio.Event()

        async def connect(index: int) -> None:
            name, tenant = f"agent-{index}", f"bench-{index % tenants}"
            token = mint(secret, tenant=tenant, agent=name, roles=["curator"], ttl=args.duration + 600)
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
                Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
            ):
                agents.append(Agent(client, name, tenant, seed=index))
                if len(agents) == args.agents:
                    ready.set()
                await done.wait()

        for index in range(args.agents):
            clients.start_soon(connect, index)
        await ready.wait()
        started = time.monotonic()
        deadline = started + args.duration

        async def sample() -> None:
            while time.monotonic() < deadline:
                samples.append(await count())
                if "middle" not in rss and time.monotonic() > started + args.duration / 2:
                    rss["middle"] = rss_bytes(pid)
                await anyio.sleep(1)

        async with anyio.create_task_group() as load:
            load.start_soon(sample)
            for agent in agents:
                load.start_soon(run_agent, agent, stats, deadline)
        elapsed = time.monotonic() - started
        rss["end"] = rss_bytes(pid)
        done.set()
    await count.close()  # type: ignore[attr-defined]
    return {
        "agents": args.agents,
        "tenants": tenants,
        "duration_s": round(elapsed, 1),
        **stats.summary(elapsed),
        "db_connections": {
            "max": max(samples, default=0),
            "mean": round(statistics.fmean(samples), 1) if samples else 0,
        },
        "server_rss_mb": {k: None if v is None else round(v / 2**20, 1) for k, v in rss.items()},
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['agents']} agents, {report['tenants']} tenant(s), {report['duration_s']} s: "
        f"{report['calls']} calls, {report['throughput_per_s']}/s, {report['errors']} errors"
    )
    print(f"{'kind':<22}{'calls':>7}{'err':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for kind, row in report["by_kind"].items():
        print(
            f"{kind:<22}{row['calls']:>7}{row['errors']:>5}{row.get('p50_ms', 0):>9}{row.get('p95_ms', 0):>9}"
            f"{row.get('p99_ms', 0):>9}{row.get('max_ms', 0):>9}"
        )
    print(
        f"db connections: max {report['db_connections']['max']}, mean {report['db_connections']['mean']}; "
        f"server RSS MB: {report['server_rss_mb']}"
    )
    for kind, errors in report["error_samples"].items():
        print(f"  {kind}: {errors[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10, help="concurrent agents (default 10; try 50, 100)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--database-url", help="a database to run in (default: a throw-away embedded PostgreSQL)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    arguments = parser.parse_args()
    result = anyio.run(main, arguments)
    print_table(result)
    write_report(arguments.out, result)
