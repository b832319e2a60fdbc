"""The hot set: a bounded in-process cache of what a "continue" turn needs, so it is served without a
retrieval query (the fast path).

Per tenant: the views, decisions in force, open tasks and pending handoffs. Per (tenant, session): the most
recent events. Writes invalidate what they touch — synchronously in the writing process, and in every other
process through PostgreSQL NOTIFY on ``agent_memory_changes`` (payload ``tenant/session``, or ``tenant/*``
for tenant-wide changes, or ``*/*`` for everything). A miss rebuilds the entry from the database with the
same fixed bounds (the cold path).

Invalidation by NOTIFY only works while this process LISTENs. When that connection is lost the server calls
``suspend()``: the cache forgets everything and caches nothing (every call takes the cold path) until
``resume()``, once LISTEN is back, which forgets everything once more (changes of the gap were missed).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, TypeVar

from agent_memory.store.rows import DecisionRow, EventRow, HandoffRow, TaskRow, ViewRow

RECENT_EVENTS: Final = 50
DECISIONS: Final = 200
TASKS: Final = 200
HANDOFFS: Final = 100  # pending packets one recall delivers
AWAITING_AGENTS: Final = 1000

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class TenantHot:
    """Tenant-wide state a bundle starts from."""

    views: dict[str, ViewRow]
    decisions: list[DecisionRow]
    tasks: list[TaskRow]
    awaited_by: frozenset[str] | None  # agents with packets pending; None: too many to list, always look


@dataclass(frozen=True)
class SessionHot:
    """The newest events of one session (newest first), the handoff packets delivered into it, and which of
    its decision events no longer hold."""

    recent: list[EventRow]
    delivered: list[HandoffRow]
    superseded: frozenset[str] = frozenset()  # recent decision events whose decision was superseded


class HotCache:
    """LRU-bounded maps of ``TenantHot`` and ``SessionHot``; safe within one event loop."""

    def __init__(self, max_tenants: int = 256, max_sessions: int = 4096) -> None:
        self._tenants: OrderedDict[str, TenantHot] = OrderedDict()
        self._sessions: OrderedDict[tuple[str, str], SessionHot] = OrderedDict()
        self._max_tenants = max_tenants
        self._max_sessions = max_sessions
        self._generations: dict[str, int] = {}
        self._suspended = False

    @property
    def suspended(self) -> bool:
        """Whether the cache is bypassed (``suspend``) because changes of other processes cannot be heard."""
        return self._suspended

    def suspend(self) -> None:
        """Forget everything and cache nothing until ``resume``: other processes' changes cannot be heard."""
        self._suspended = True
        self.invalidate("*", "*")

    def resume(self) -> None:
        """Cache again, starting empty: whatever was loaded before may have missed changes made meanwhile."""
        self._suspended = False
        self.invalidate("*", "*")

    def generation(self, tenant: str) -> int:
        """Bumped by every invalidation of ``tenant``: read it before loading state from the database and
        hand it to ``put_*``, which then refuses state that a write made stale meanwhile."""
        return self._generations.get(tenant, 0) + self._generations.get("*", 0)

    def tenant(self, tenant: str) -> TenantHot | None:
        return self._get(self._tenants, tenant)

    def session(self, tenant: str, session_id: str) -> SessionHot | None:
        return self._get(self._sessions, (tenant, session_id))

    def put_tenant(self, tenant: str, value: TenantHot, generation: int) -> None:
        if not self._suspended and generation == self.generation(tenant):
            self._put(self._tenants, tenant, value, self._max_tenants)

    def put_session(self, tenant: str, session_id: str, value: SessionHot, generation: int) -> None:
        if not self._suspended and generation == self.generation(tenant):
            self._put(self._sessions, (tenant, session_id), value, self._max_sessions)

    def invalidate(self, tenant: str, scope: str) -> None:
        """Forget ``scope`` of ``tenant``: a session id, or ``*`` for everything of the tenant.
        ``tenant == "*"`` forgets everything (after a reindex)."""
        self._generations[tenant] = self._generations.get(tenant, 0) + 1
        if tenant == "*":
            self._tenants.clear()
            self._sessions.clear()
            return
        if scope == "*":
            self._tenants.pop(tenant, None)
            for key in [key for key in self._sessions if key[0] == tenant]:
                del self._sessions[key]
        else:
            self._sessions.pop((tenant, scope), None)

    def invalidate_payload(self, payload: str) -> None:
        """Apply a NOTIFY payload ``tenant/scope``."""
        tenant, _, scope = payload.partition("/")
        self.invalidate(tenant, scope or "*")

    @staticmethod
    def _get(store: OrderedDict[K, V], key: K) -> V | None:
        value = store.get(key)
        if value is not None:
            store.move_to_end(key)
        return value

    @staticmethod
    def _put(store: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > limit:
            store.popitem(last=False)
