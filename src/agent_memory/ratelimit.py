"""Rate limits: a token bucket per tenant and one per agent, checked before every call.

With ``AGENT_MEMORY_REDIS_URL`` the buckets live in Redis (one atomic script per check), so every replica
draws from the same budget; without it they live in this process. When Redis cannot be reached the check
*fails open*: the call goes through, a warning is logged and ``redis_failures`` counts it — a memory server
that stops answering because its rate limiter is down would do more harm than a burst of extra calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agent_memory.caller import Caller
from agent_memory.errors import RateLimited
from agent_memory.settings import Settings

log = structlog.get_logger(__name__)

# KEYS[1] = bucket; ARGV = rate per second, burst, now (s), cost. Returns 0 (taken) or seconds to wait.
_TAKE: Final = """
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


@dataclass(frozen=True)
class Limit:
    """``rate`` calls a second on average, up to ``burst`` at once; a rate of 0 means no limit."""

    rate: float
    burst: float


class Buckets(Protocol):
    async def take(self, key: str, limit: Limit) -> float:
        """0 when a call may go now, else the seconds until it may."""
        ...


class LocalBuckets:
    """Buckets in this process (the default without Redis)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, limit: Limit) -> float:
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - at) * limit.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / limit.rate


class RedisBuckets:
    """Buckets shared by every replica through Redis; fails open when Redis does not answer."""

    def __init__(self, url: str, prefix: str = "agent-memory:rate:") -> None:
        self._redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = prefix
        self.redis_failures = 0

    async def take(self, key: str, limit: Limit) -> float:
        try:
            wait = await self._redis.eval(_TAKE, 1, self._prefix + key, limit.rate, limit.burst, time.time(), 1)
        except (RedisError, OSError) as exc:
            self.redis_failures += 1
            log.warning("rate limiter cannot reach Redis; letting the call through", error=str(exc))
            return 0.0
        return float(wait)

    async def close(self) -> None:
        await self._redis.aclose()


class RateLimiter:
    """Checks the tenant's and the agent's bucket for each call."""

    def __init__(self, buckets: Buckets, per_tenant: Limit, per_agent: Limit) -> None:
        self.buckets = buckets
        self._per_tenant = per_tenant
        self._per_agent = per_agent

    async def check(self, caller: Caller) -> None:
        """Raise ``RateLimited`` (with the seconds to wait) when either bucket is empty."""
        for scope, key, limit in (
            ("tenant", f"t:{caller.tenant}", self._per_tenant),
            ("agent", f"a:{caller.tenant}:{caller.agent_id}", self._per_agent),
        ):
            if limit.rate <= 0:
                continue
            wait = await self.buckets.take(key, limit)
            if wait > 0:
                budget = f"{limit.rate:g}/s, bursts of {limit.burst:g}"
                raise RateLimited(
                    f"too many calls for this {scope} ({budget}); retry in {wait:.2f} s", retry_after=wait
                )

    async def close(self) -> None:
        """Release the Redis connection, if any."""
        if isinstance(self.buckets, RedisBuckets):
            await self.buckets.close()


def rate_limiter(settings: Settings) -> RateLimiter:
    """The limiter the settings ask for: Redis-backed with ``redis_url``, in-process otherwise."""
    buckets: Buckets = (
        RedisBuckets(settings.redis_url.get_secret_value()) if settings.redis_url is not None else LocalBuckets()
    )
    return RateLimiter(
        buckets,
        per_tenant=Limit(settings.rate_limit_tenant, settings.rate_limit_tenant_burst),
        per_agent=Limit(settings.rate_limit_agent, settings.rate_limit_agent_burst),
    )
