"""What the MCP layer needs at hand for every call: the database, the limits and who is calling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from agent_memory.caller import Caller
from agent_memory.context.hotset import HotCache
from agent_memory.context.semantic import Semantic
from agent_memory.embeddings.model import Embedder
from agent_memory.ingest import Limits
from agent_memory.metrics import Metrics
from agent_memory.ratelimit import RateLimiter
from agent_memory.settings import Settings
from agent_memory.store.database import Database


@dataclass(frozen=True)
class Runtime:
    """Built once at start by ``server/`` and handed to every tool and resource."""

    db: Database
    settings: Settings
    identify: Callable[[], Caller]
    hot: HotCache = field(default_factory=HotCache)
    limiter: RateLimiter | None = None
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            batch_max=s.batch_max,
            text_max_chars=s.text_max_chars,
            artifact_threshold_chars=s.artifact_threshold_chars,
            chunk_tokens=s.chunk_tokens,
        )

    @cached_property
    def semantic(self) -> Semantic | None:
        """The embedding model recall and the background embedder share (loaded on first use); ``None`` when
        ``AGENT_MEMORY_EMBEDDINGS`` is off."""
        if not self.settings.embeddings:
            return None
        return Semantic(Embedder(threads=self.settings.embedding_threads))

    def caller(self, agent_id: str | None = None) -> Caller:
        """The verified caller of the current request; over stdio it may name its agent per call."""
        return self.identify().as_agent(agent_id)


def local_identity(settings: Settings) -> Callable[[], Caller]:
    """Identity of a stdio (or in-process) server: the configured tenant and agent, every role."""
    caller = Caller(tenant=settings.tenant, agent_id=settings.agent, principal=f"local:{settings.agent}")
    return lambda: caller
