"""Prometheus metrics of one server process, served at ``/metrics`` in the text format.

Each server (and each test's server) has its own registry, so several can live in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The counters and histograms the server updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "agent_memory_requests", "Tool calls and resource reads.", ["action", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "agent_memory_request_seconds",
            "Latency of tool calls and resource reads, per action and status (ok or the error code).",
            ["action", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "agent_memory_rate_limited", "Calls refused by a rate limit.", ["scope"], registry=self.registry
        )
        self.bundle_tokens = Histogram(
            "agent_memory_bundle_tokens",
            "Estimated tokens of recall bundles, per section.",
            ["section"],
            buckets=(0, 100, 500, 1000, 2000, 4000, 8000, 16000, 32000, 65000),
            registry=self.registry,
        )
        self.candidate_pool = Histogram(
            "agent_memory_candidate_pool",
            "Evidence candidates considered per recall.",
            buckets=(0, 10, 50, 100, 250, 500, 1000, 2000),
            registry=self.registry,
        )
        self.pool_connections = Gauge(
            "agent_memory_db_connections", "Database pool connections.", ["state"], registry=self.registry
        )
        self.database_up = Gauge(
            "agent_memory_database_up", "1 when the database answered the last check, else 0.", registry=self.registry
        )
        self.auth_failures = Counter(
            "agent_memory_auth_failures",
            "Requests refused for their credentials (bearer token, API key or signature).",
            ["kind"],
            registry=self.registry,
        )
        self.recall_paths = Counter(
            "agent_memory_recall_paths",
            "Recalls by path: fast (served by the hot set), retrieval, cold (state rebuilt): the cache hit ratio.",
            ["path"],
            registry=self.registry,
        )
        self.embedding_queue = Gauge(
            "agent_memory_embedding_queue", "Tenants waiting for the background embedder.", registry=self.registry
        )
        self.embedded_chunks = Counter(
            "agent_memory_embedded_chunks", "Chunks the background embedder embedded.", registry=self.registry
        )
        self.slow_queries = Counter(
            "agent_memory_slow_queries",
            "Named queries slower than AGENT_MEMORY_SLOW_QUERY_MS.",
            ["query"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open fds
        self.memory_limit = Gauge(
            "agent_memory_memory_limit_bytes",
            "The memory limit of this process's container (cgroup); absent when there is none.",
            registry=self.registry,
        )
        limit = memory_limit()
        if limit is not None:
            self.memory_limit.set(limit)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The cgroup memory limit in bytes (v2 ``memory.max``, else v1), or None when unlimited or unknown."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (root / name).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 reports "no limit" as a huge number
            return int(text)
        return None
    return None
