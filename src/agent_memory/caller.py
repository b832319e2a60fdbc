"""Who is calling: the tenant, agent and permissions every domain call runs under."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent_memory.errors import Forbidden
from agent_memory.vocabulary import CHANNELS


@dataclass(frozen=True)
class Caller:
    """The verified identity of a call. Over stdio: the configured tenant, every role and channel."""

    tenant: str
    agent_id: str
    roles: frozenset[str] = frozenset({"reader", "writer", "curator", "admin"})
    channels: frozenset[str] = field(default_factory=lambda: frozenset(CHANNELS))
    principal: str = ""
    request_id: str | None = None
    fixed_agent: bool = False  # a token names its agent: it may not act as another

    def as_agent(self, agent_id: str | None) -> Caller:
        """The same caller acting as ``agent_id`` (stdio callers name their agent per call; a token's
        caller may only repeat its own)."""
        if agent_id is None or agent_id == self.agent_id:
            return self
        if self.fixed_agent:
            raise Forbidden(f"agent_id: this token acts for {self.agent_id!r}, not {agent_id!r}")
        return replace(self, agent_id=agent_id)
