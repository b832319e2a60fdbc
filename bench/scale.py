"""Scale: how `recall` and `remember` grow with the size of a tenant's history.

    uv run python bench/scale.py [--sizes 10000,100000] [--samples 50] [--database-url URL] [--out FILE]

For each size the tenant is topped up to that many events with COPY (each prepared like a plain `remember`:
redaction, sensitivity, chunks; a progress line on stderr), then one real ``serve --http`` is measured over
MCP: ``recall`` on the fast path (the same session again), the retrieval path (a question) and the cold path (a
session the hot set has never seen), and ``remember`` of a new message. Prints p50/p95 per path and size and
how each grows from the smallest size to the largest (target: sub-linear; 1M no worse than 2x of 10k); for
``recall`` also the time inside the server (without the transport and the MCP client's own checking of the
result against the tool's output schema). Add 1000000 to ``--sizes`` for the full run (several minutes of
seeding). Without ``--database-url`` a throw-away embedded PostgreSQL is used; with it, the events an earlier run
left in the tenant count, so a database seeded once can be measured again (sizes it has outgrown by more than 1%
are skipped).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
from _common import TOPICS, database, http_server, percentiles
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent_memory.replay.seed import bulk
from agent_memory.replay.transcript import Seed
from agent_memory.store.database import Database
from agent_memory.tokens import mint

TENANT = "scale"
STEMS = ("alpha", "delta", "omega", "sigma", "kappa", "zeta")
VOCABULARY = [f"{stem}{suffix}" for stem in STEMS for suffix in range(300)]


def templates(rng: random.Random, count: int = 500) -> list[str]:
    """Varied message templates: topic words every query can hit, and rare words that make each distinct."""
    return [
        " ".join([*rng.sample(TOPICS, 3), *rng.sample(VOCABULARY, 8)]).capitalize() + " (item {i})."
        for _ in range(count)
    ]


async def top_up(db: Database, have: int, want: int, rng: random.Random) -> None:
    """Add events until the tenant holds ``want``, in COPY batches, spread over the last year."""
    step = 50_000
    while have < want:
        count = min(step, want - have)
        end = datetime.now(UTC) - timedelta(hours=1) - timedelta(minutes=have // 1000)
        seed = Seed(count=count, texts=templates(rng), session=f"history-{have // step}", bulk=True)
        await bulk(db, TENANT, "seeder", seed, end - timedelta(days=365), end)
        have += count
        sys.stderr.write(f"\rseeded {have:,}/{want:,} events")
        sys.stderr.flush()
    sys.stderr.write("\n")
    async with db.pool.acquire() as conn:  # as autovacuum would after a bulk load: plans need the statistics
        await conn.execute("VACUUM ANALYZE")


async def timed(samples: int, call: Callable[[int], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Percentiles of ``samples`` calls over MCP; for a recall also of the time it took inside the server (its
    provenance's ``total_ms``), which leaves out the transport and the client's checking of the result."""
    seconds, inside = [], []
    for index in range(samples):
        started = time.perf_counter()
        result = await call(index)
        seconds.append(time.perf_counter() - started)
        total = result.get("provenance", {}).get("timings_ms", {}).get("total_ms")
        if total is not None:
            inside.append(total / 1000)
    report: dict[str, Any] = percentiles(seconds)
    if inside:
        report["in_server"] = percentiles(inside)
    return report


async def measure(client: Client, samples: int, rng: random.Random, size: int) -> dict[str, Any]:
    async def tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, arguments)
        if result.is_error:
            raise RuntimeError(result.content[0].text)  # type: ignore[union-attr]
        return result.structured_content or {}

    async def path_of(arguments: dict[str, Any]) -> str:
        return str((await tool("recall", arguments))["provenance"]["path"])

    warm = f"warm-{size}"
    await tool("remember", {"text": "warming the session", "session_id": warm})
    await tool("recall", {"query": "", "session_id": warm})
    report: dict[str, Any] = {
        "fast": await timed(samples, lambda _: tool("recall", {"query": "", "session_id": warm})),
        "retrieval": await timed(
            samples, lambda _: tool("recall", {"query": " ".join(rng.sample([*TOPICS, *VOCABULARY], 4))})
        ),
        "cold": await timed(samples, lambda i: tool("recall", {"query": "", "session_id": f"cold-{size}-{i}"})),
        "remember": await timed(
            samples, lambda i: tool("remember", {"text": f"New finding {i}: {' '.join(rng.sample(VOCABULARY, 6))}"})
        ),
    }
    report["paths_seen"] = {
        "fast": await path_of({"query": "", "session_id": warm}),
        "cold": await path_of({"query": "", "session_id": f"check-{size}"}),
    }
    return report


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(int(size) for size in args.sizes.split(","))
    rng = random.Random(7)  # noqa: S311 - synthetic data, not secrets
    results: dict[str, Any] = {}
    async with database(args.database_url) as dsn:
        db = await Database.connect(dsn, max_size=4)
        async with db.transaction(TENANT) as tx:
            have = await tx.count_events()
        try:
            for size in sizes:
                if have > size * 1.01:  # a run's own calls add a few hundred events
                    sys.stderr.write(f"skipped {size:,}: the tenant already holds {have:,} events\n")
                    continue
                await top_up(db, have, size, rng)
                have = max(have, size)
                serving = http_server(dsn, embeddings="false") if args.no_embeddings else http_server(dsn)
                async with serving as server:
                    token = mint(server.jwt_secret, tenant=TENANT, agent="bench", roles=["writer"], ttl=3600)
                    async with (
                        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http,
                        Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
                    ):
                        results[str(size)] = await measure(client, args.samples, rng, size)
                print_size(size, results[str(size)])
        finally:
            await db.close()
    sizes = [size for size in sizes if str(size) in results]
    if not sizes:
        raise SystemExit(f"nothing measured: the tenant {TENANT!r} already holds more events than every size asked for")
    smallest, largest = str(sizes[0]), str(sizes[-1])
    growth = {
        path: round(results[largest][path]["p95_ms"] / max(results[smallest][path]["p95_ms"], 0.001), 2)
        for path in ("fast", "retrieval", "cold", "remember")
    }
    return {"tenant_sizes": sizes, "samples": args.samples, "results": results, "p95_growth": growth}


def print_size(size: int, result: dict[str, Any]) -> None:
    def cell(path: str) -> str:
        measured = result[path]
        inside = measured.get("in_server")
        server = f" (server {inside['p50_ms']:.1f}/{inside['p95_ms']:.1f})" if inside else ""
        return f"{path} {measured['p50_ms']:.1f}/{measured['p95_ms']:.1f}{server}"

    cells = "  ".join(cell(path) for path in ("fast", "retrieval", "cold", "remember"))
    print(f"{size:>9,} events  p50/p95 ms: {cells}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated tenant sizes (default 10000,100000)")
    parser.add_argument("--samples", type=int, default=50, help="calls measured per path and size (default 50)")
    parser.add_argument("--database-url", help="a database to run in (default: a throw-away embedded PostgreSQL)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument(
        "--no-embeddings",
        action="store_true",
        help="serve with AGENT_MEMORY_EMBEDDINGS=false: lexical retrieval, and no background embedder working through"
        " the seeded chunks while the calls are timed",
    )
    arguments = parser.parse_args()
    report = anyio.run(main, arguments)
    print(f"p95 growth from {report['tenant_sizes'][0]:,} to {report['tenant_sizes'][-1]:,}: {report['p95_growth']}")
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
