"""Write throughput: how many events a second one real ``agent-memory serve --http`` takes in.

    uv run python bench/throughput.py [--writers 10] [--duration 30] [--batches 20] [--batch-size 500]
                                      [--no-embeddings] [--database-url URL] [--out FILE]

Two measurements, each against the same server, each client its own MCP session over streamable HTTP:

- sustained ``remember``: ``--writers`` clients (one tenant each) send single chat-sized messages back to back
  for ``--duration`` seconds; reports remember/s and the latency p50/p95/p99 (issue #7's target: ≥ 300/s);
- bulk replay: one client sends ``--batches`` calls of ``--batch-size`` events each (``remember`` with
  ``events``, one transaction per call), as an import or a transcript replay would; reports events/s and the
  latency per batch (target: ≥ 2,000 events/s).

Rate limits are lifted for the run. The server's background embedder runs as in production (it competes for the
same cores) unless ``--no-embeddings``. Prints a table and writes JSON with ``--out``. Without
``--database-url`` a throw-away embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from _common import TOPICS, database, http_server, percentiles, write_report
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent_memory.tokens import mint


def message(rng: random.Random, i: int) -> str:
    """A chat-sized message, distinct each time (duplicates would be cheaper than new text)."""
    words = rng.sample(TOPICS, 3)
    return f"Note {i}: the {words[0]} work touches {words[1]} and {words[2]}; ticket {rng.randrange(10**9)} is open."


async def session(base: str, secret: str, tenant: str, agent: str) -> tuple[httpx2.AsyncClient, Any]:
    token = mint(secret, tenant=tenant, agent=agent, roles=["writer"], ttl=3600)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    return http, Client(streamable_http_client(f"{base}/mcp", http_client=http))


async def call(client: Client, arguments: dict[str, Any]) -> None:
    result = await client.call_tool("remember", arguments)
    if result.is_error:
        raise RuntimeError(" ".join(getattr(part, "text", "") for part in result.content))


async def sustained(base: str, secret: str, writers: int, duration: float) -> dict[str, Any]:
    """``writers`` clients sending single remembers for ``duration`` seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    ready = anyio.Event()
    connected = 0
    start_at: list[float] = []

    async def writer(index: int) -> None:
        nonlocal connected
        rng = random.Random(index)  # noqa: S311 - varied text, not secrets
        http, client = await session(base, secret, f"writer-{index}", f"writer-{index}")
        async with http, client:
            connected += 1
            if connected == writers:
                start_at.append(time.monotonic())
                ready.set()
            await ready.wait()
            deadline = start_at[0] + duration
            i = 0
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    await call(client, {"text": message(rng, i), "session_id": "chat"})
                    latencies.append(time.perf_counter() - began)
                except Exception as exc:  # counted and reported; the run goes on
                    errors.append(str(exc)[:200])
                i += 1

    async with anyio.create_task_group() as group:
        for index in range(writers):
            group.start_soon(writer, index)
    elapsed = time.monotonic() - start_at[0]
    return {
        "writers": writers,
        "seconds": round(elapsed, 1),
        "remembers": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "error_samples": errors[:3],
        "latency_ms": percentiles(latencies),
    }


async def bulk(base: str, secret: str, batches: int, size: int) -> dict[str, Any]:
    """One client replaying ``batches`` × ``size`` events, one ``remember`` call per batch."""
    rng = random.Random(7)  # noqa: S311 - varied text, not secrets
    latencies: list[float] = []
    http, client = await session(base, secret, "replay", "replayer")
    async with http, client:
        started = time.monotonic()
        for b in range(batches):
            events = [{"text": message(rng, b * size + i), "session_id": f"transcript-{b}"} for i in range(size)]
            began = time.perf_counter()
            await call(client, {"events": events})
            latencies.append(time.perf_counter() - began)
        elapsed = time.monotonic() - started
    return {
        "batches": batches,
        "batch_size": size,
        "events": batches * size,
        "seconds": round(elapsed, 1),
        "events_per_second": round(batches * size / elapsed, 1),
        "batch_latency_ms": percentiles(latencies),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with (
        database(args.database_url) as dsn,
        http_server(dsn, embeddings="false") if args.no_embeddings else http_server(dsn) as server,
    ):
        return {
            "embeddings": not args.no_embeddings,
            "sustained_remember": await sustained(server.base_url, server.jwt_secret, args.writers, args.duration),
            "bulk_replay": await bulk(server.base_url, server.jwt_secret, args.batches, args.batch_size),
        }


def print_table(report: dict[str, Any]) -> None:
    s, b = report["sustained_remember"], report["bulk_replay"]
    lat = s["latency_ms"]
    print(
        f"sustained remember: {s['writers']} writers, {s['seconds']} s: {s['remembers']} calls, "
        f"{s['per_second']}/s, {s['errors']} errors; p50 {lat.get('p50_ms')} / p95 {lat.get('p95_ms')} / "
        f"p99 {lat.get('p99_ms')} ms"
    )
    blat = b["batch_latency_ms"]
    print(
        f"bulk replay: {b['batches']} x {b['batch_size']} events in {b['seconds']} s: {b['events_per_second']} "
        f"events/s; per batch p50 {blat.get('p50_ms')} / p95 {blat.get('p95_ms')} ms"
    )
    for sample in s["error_samples"]:
        print(f"  error: {sample}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=10, help="concurrent writers (default 10)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of sustained remember (default 30)")
    parser.add_argument("--batches", type=int, default=20, help="bulk replay calls (default 20)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per bulk call (default 500, the most)")
    parser.add_argument("--no-embeddings", action="store_true", help="serve with AGENT_MEMORY_EMBEDDINGS=false")
    parser.add_argument("--database-url", help="a database to run in (default: a throw-away embedded PostgreSQL)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    arguments = parser.parse_args()
    result = anyio.run(main, arguments)
    print_table(result)
    write_report(arguments.out, result)
