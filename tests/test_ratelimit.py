"""Rate limits: token buckets per tenant and agent, shared through Redis across processes, failing open."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import anyio
import pytest
from mcp import Client
from structlog.testing import capture_logs

from agent_memory.caller import Caller
from agent_memory.errors import RateLimited
from agent_memory.ratelimit import Limit, LocalBuckets, RateLimiter, RedisBuckets
from agent_memory.runtime import Runtime, local_identity
from agent_memory.server.app import build_server
from agent_memory.settings import Settings
from agent_memory.store.database import Database

pytestmark = pytest.mark.anyio
REDIS_URL = os.environ.get("AGENT_MEMORY_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="AGENT_MEMORY_TEST_REDIS_URL names no Redis to test with")


async def test_a_bucket_allows_its_burst_then_says_when_to_retry() -> None:
    """Three calls go through a burst of three; the fourth is refused with the wait; later it goes."""
    buckets, limit = LocalBuckets(), Limit(rate=20, burst=3)
    assert [await buckets.take("k", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await buckets.take("k", limit)
    assert 0 < wait <= 1 / 20
    await anyio.sleep(wait + 0.01)
    assert await buckets.take("k", limit) == 0.0


async def test_tenant_and_agent_budgets_are_separate() -> None:
    """An agent over its own budget is refused while another agent of the tenant still gets through."""
    limiter = RateLimiter(LocalBuckets(), per_tenant=Limit(100, 100), per_agent=Limit(1, 2))
    a, b = Caller(tenant="t", agent_id="a"), Caller(tenant="t", agent_id="b")
    await limiter.check(a)
    await limiter.check(a)
    with pytest.raises(RateLimited, match="this agent") as refused:
        await limiter.check(a)
    assert refused.value.retry_after > 0
    await limiter.check(b)


@pytest.fixture
async def rate_limited_client(db: Database, settings: Settings) -> AsyncIterator[Client]:
    limiter = RateLimiter(LocalBuckets(), per_tenant=Limit(0.5, 2), per_agent=Limit(100, 100))
    runtime = Runtime(db=db, settings=settings, identify=local_identity(settings), limiter=limiter)
    async with Client(build_server(runtime), raise_exceptions=True) as client:
        yield client


async def test_an_over_limit_call_gets_a_rate_limited_error_with_retry_after(rate_limited_client: Client) -> None:
    """The call past the tenant's burst is a tool error `rate_limited: ... (retry_after=...)` and writes nothing."""
    for _ in range(2):
        assert not (await rate_limited_client.call_tool("remember", {"text": "ok"})).is_error
    refused = await rate_limited_client.call_tool("remember", {"text": "one too many"})
    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Error executing tool remember: rate_limited: too many calls for this tenant")
    assert "retry_after=" in text


@needs_redis
async def test_two_processes_share_one_budget_through_redis() -> None:
    """Two limiters (as two replicas would hold) draw from one Redis bucket: together they get the burst."""
    assert REDIS_URL is not None
    key, limit = f"test-{secrets.token_hex(4)}", Limit(rate=0.1, burst=4)
    first, second = RedisBuckets(REDIS_URL), RedisBuckets(REDIS_URL)
    try:
        waits = [await (first if i % 2 else second).take(key, limit) for i in range(6)]
    finally:
        await first.close()
        await second.close()
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0]
    assert all(w > 0 for w in waits[4:])


async def test_redis_down_fails_open_with_a_warning() -> None:
    """With Redis unreachable every call goes through; each failure is logged and counted."""
    buckets = RedisBuckets("redis://127.0.0.1:1/0")
    try:
        with capture_logs() as logs:
            waits = [await buckets.take("k", Limit(rate=1, burst=1)) for _ in range(3)]
    finally:
        await buckets.close()
    assert waits == [0.0, 0.0, 0.0]
    assert buckets.redis_failures == 3
    assert [entry["log_level"] for entry in logs] == ["warning"] * 3
