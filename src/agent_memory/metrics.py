"""Prometheus metrics of one server process, served at ``/metrics`` in the text format.

Each server (and each test's server) has its own registry, so several can live in one process.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
            "Latency of tool calls and resource reads.",
            ["action"],
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

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
