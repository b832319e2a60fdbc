"""Soak: N agents against one real ``agent-memory serve --http`` for a long while, watching for leaks.

    uv run python bench/soak.py [--agents 10] [--minutes 30] [--interval 60] [--warmup 1]
                                [--max-calls 50000] [--call-timeout 60] [--database-url URL]
                                [--server-log FILE] [--out FILE]

Each agent is its own MCP client over streamable HTTP with its own token and runs the realistic mix of
bench/load.py (remember, recall, decisions, supersessions, handoffs, resource reads) until the time is up or it
has made ``--max-calls`` calls; a call with no answer within ``--call-timeout`` seconds is abandoned and counts
as failed, so the run ends at most that long after the time is up. Once before the load starts and then every
``--interval`` seconds the server process is sampled: resident memory (RSS), open file descriptors, and its
PostgreSQL connections (all, and those not idle). The first ``--warmup`` samples after the start are the
warm-up; the last of them is the baseline, and every later sample is compared with it. Prints the samples
(with the calls made and the p95 latency of the calls finished since the previous sample), the calls per kind
and the verdict: it passes when no call failed and neither RSS nor the connections ever grew by 10% or more
over the baseline (file descriptors are reported, not judged). Writes the same as JSON to ``--out``; exits
with status 1 when the verdict fails. The server's log (warnings and errors) goes to stderr, or to
``--server-log``. Without ``--database-url`` a throw-away embedded PostgreSQL is used.

A short run: ``uv run python bench/soak.py --minutes 5 --interval 60`` (six samples: start, baseline at one
minute, four compared).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx2
import structlog
from _common import APPLICATION, database, http_server, open_fds, percentiles, rss_bytes, write_report
from load import Agent, Stats, print_table
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent_memory.tokens import mint

GROWTH_LIMIT = 0.10  # the verdict: RSS and connections must stay under +10% of the baseline
JUDGED = ("rss_mb", "db_connections")
REPORTED = ("fds",)


@dataclass
class Calls:
    """What the agents have done so far, shared with the sampler."""

    stats: Stats
    total: int = 0
    errors: int = 0
    window: list[float] = field(default_factory=list)  # latencies since the last sample

    def record(self, kind: str, seconds: float, error: str | None) -> None:
        self.stats.latencies[kind].append(seconds)
        if error is not None:
            self.stats.errors[kind].append(error)
            self.errors += 1
        self.total += 1
        self.window.append(seconds)

    def take_window(self) -> list[float]:
        window, self.window = self.window, []
        return window


async def run_agent(agent: Agent, calls: Calls, deadline: float, max_calls: int, call_timeout: float) -> None:
    """The agent's calls until ``deadline`` or ``max_calls``, whichever comes first; a call that takes longer
    than ``call_timeout`` seconds is abandoned and counted as failed."""
    for _ in range(max_calls):
        if time.monotonic() >= deadline:
            return
        kind, tool, arguments = agent.next_call()
        started, error = time.perf_counter(), None
        try:
            with anyio.fail_after(call_timeout):
                await agent.call(tool, arguments)
        except TimeoutError:
            error = f"TimeoutError: no answer within {call_timeout:g} s"
        except Exception as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:300]
        calls.record(kind, time.perf_counter() - started, error)


@asynccontextmanager
async def agents(base: str, secret: str, count: int, ttl: float) -> AsyncIterator[list[Agent]]:
    """``count`` connected agents (one client and token each), spread over ``count // 10`` tenants."""
    tenants = max(1, count // 10)
    connected: list[Agent] = []
    ready, done = anyio.Event(), anyio.Event()

    async def connect(index: int) -> None:
        name, tenant = f"agent-{index}", f"soak-{index % tenants}"
        token = mint(secret, tenant=tenant, agent=name, roles=["curator"], ttl=int(ttl))
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
        ):
            connected.append(Agent(client, name, tenant, seed=index))
            if len(connected) == count:
                ready.set()
            await done.wait()

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(connect, index)
        with anyio.fail_after(120):
            await ready.wait()
        try:
            yield connected
        finally:
            done.set()


class Sampler:
    """Samples the server process and its database connections."""

    def __init__(self, conn: asyncpg.Connection, pid: int, calls: Calls, started: float) -> None:
        self.conn, self.pid, self.calls, self.started = conn, pid, calls, started
        self.samples: list[dict[str, Any]] = []

    async def sample(self) -> None:
        row = await self.conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE state <> 'idle') AS busy "
            "FROM pg_stat_activity WHERE application_name = $1",
            APPLICATION,
        )
        rss = rss_bytes(self.pid)
        window = self.calls.take_window()
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self.started, 1),
                "rss_mb": None if rss is None else round(rss / 2**20, 1),
                "fds": open_fds(self.pid),
                "db_connections": row["total"],
                "db_busy": row["busy"],
                "calls": self.calls.total,
                "errors": self.calls.errors,
                "interval_calls": len(window),
                "interval_p95_ms": percentiles(window).get("p95_ms"),
            }
        )

    async def every(self, interval: float, deadline: float) -> None:
        """A sample at the start, then each ``interval`` seconds until ``deadline``, and one at ``deadline``."""
        tick = self.started
        while True:
            await self.sample()
            if tick >= deadline:
                return
            tick = min(tick + interval, deadline)
            await anyio.sleep(max(0.0, tick - time.monotonic()))


def growth(samples: list[dict[str, Any]], warmup: int) -> dict[str, dict[str, float | None]]:
    """Per metric: the baseline (the last warm-up sample), the peak after it, and the growth of the peak and of
    the last sample over the baseline (fractions: 0.05 is +5%)."""
    baseline, later = samples[warmup], samples[warmup + 1 :]
    result: dict[str, dict[str, float | None]] = {}
    for metric in JUDGED + REPORTED:
        base, values = baseline[metric], [s[metric] for s in later if s[metric] is not None]
        if base is None or not values:
            result[metric] = {"baseline": base, "peak": None, "peak_growth": None, "end_growth": None}
            continue

        def over(value: float, base: float = base) -> float | None:
            if not base:
                return 0.0 if value == 0 else None  # grew from nothing: no ratio, and judged as failed
            return round(value / base - 1, 4)

        peak = max(values)
        result[metric] = {
            "baseline": base,
            "peak": peak,
            "peak_growth": over(peak),
            "end_growth": over(values[-1]),
        }
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    duration = args.minutes * 60
    log = args.server_log.open("a", encoding="utf-8") if args.server_log else None
    async with database(args.database_url, name="soak") as dsn, http_server(dsn, stderr=log) as server:
        conn = await asyncpg.connect(dsn)
        try:
            calls = Calls(Stats())
            async with agents(server.base_url, server.jwt_secret, args.agents, duration + 600) as connected:
                started = time.monotonic()
                deadline = started + duration
                sampler = Sampler(conn, server.process.pid, calls, started)
                async with anyio.create_task_group() as load:
                    load.start_soon(sampler.every, args.interval, deadline)
                    for agent in connected:
                        load.start_soon(run_agent, agent, calls, deadline, args.max_calls, args.call_timeout)
                elapsed = time.monotonic() - started
        finally:
            await conn.close()
    if log is not None:
        log.close()
    samples = sampler.samples
    grown = growth(samples, args.warmup)
    problems = [f"{calls.errors} call(s) failed"] if calls.errors else []
    for metric in JUDGED:
        peak = grown[metric]["peak_growth"]
        if peak is None:
            problems.append(f"{metric}: no growth over the baseline {grown[metric]['baseline']} can be computed")
        elif peak >= GROWTH_LIMIT:
            problems.append(f"{metric} grew {peak:.1%} over the baseline (limit {GROWTH_LIMIT:.0%})")
    rss_values = [s["rss_mb"] for s in samples]
    connections = [s["db_connections"] for s in samples]
    return {
        "agents": args.agents,
        "tenants": max(1, args.agents // 10),
        "minutes": args.minutes,
        "interval_s": args.interval,
        "warmup_samples": args.warmup,
        "duration_s": round(elapsed, 1),
        **calls.stats.summary(elapsed),
        # what load.py reports too, so its table prints the same way
        "db_connections": {"max": max(connections), "mean": round(sum(connections) / len(connections), 1)},
        "server_rss_mb": {"start": rss_values[0], "baseline": rss_values[args.warmup], "end": rss_values[-1]},
        "samples": samples,
        "growth": grown,
        "growth_limit": GROWTH_LIMIT,
        "passed": not problems,
        "problems": problems,
    }


def print_report(report: dict[str, Any]) -> None:
    print_table(report)
    print()
    header = f"{'t min':>6}{'RSS MB':>9}{'fds':>6}{'db conn':>9}{'db busy':>9}{'calls':>8}{'errors':>8}{'p95 ms':>9}"
    print(header)
    for index, sample in enumerate(report["samples"]):
        note = "  start" if index == 0 else ""
        note = "  baseline" if index == report["warmup_samples"] else note
        note = note or ("  warm-up" if index < report["warmup_samples"] else "")
        print(
            f"{sample['t_s'] / 60:>6.1f}{sample['rss_mb']!s:>9}{sample['fds']!s:>6}{sample['db_connections']:>9}"
            f"{sample['db_busy']:>9}{sample['calls']:>8}{sample['errors']:>8}{sample['interval_p95_ms']!s:>9}{note}"
        )
    for metric, row in report["growth"].items():
        judged = "" if metric in JUDGED else " (reported, not judged)"
        peak, end = row["peak_growth"], row["end_growth"]
        shown = "n/a" if peak is None or end is None else f"peak {peak:+.1%}, end {end:+.1%}"
        print(f"growth of {metric} over the baseline {row['baseline']}: {shown}{judged}")
    verdict = "PASS" if report["passed"] else "FAIL: " + "; ".join(report["problems"])
    print(f"verdict: {verdict}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10, help="concurrent agents (default 10)")
    parser.add_argument("--minutes", type=float, default=30, help="minutes of load (default 30)")
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples (default 60)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="samples after the start that are warm-up; the last is the baseline"
    )
    parser.add_argument("--max-calls", type=int, default=50_000, help="calls per agent at most (default 50000)")
    parser.add_argument(
        "--call-timeout", type=float, default=60, help="seconds after which a call counts as failed (default 60)"
    )
    parser.add_argument("--database-url", help="a database to run in (default: a throw-away embedded PostgreSQL)")
    parser.add_argument("--server-log", type=Path, help="append the server's log here (default: to our stderr)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    if min(args.agents, args.interval, args.warmup, args.max_calls, args.call_timeout) <= 0:
        parser.error("--agents, --interval, --warmup, --max-calls and --call-timeout must be positive")
    if args.minutes * 60 / args.interval < args.warmup + 1:
        parser.error(
            f"--minutes {args.minutes:g} at --interval {args.interval:g} s gives no sample after the baseline "
            f"(sample {args.warmup}); run longer or sample more often"
        )
    return args


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is for the report
    arguments = parse_args()
    result = anyio.run(main, arguments)
    print_report(result)
    write_report(arguments.out, result)
    sys.exit(0 if result["passed"] else 1)
