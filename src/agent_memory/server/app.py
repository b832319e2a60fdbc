"""Wiring: the MCP server with every tool and resource, bound to one ``Runtime``; and the relay of changes made
by any process (PostgreSQL NOTIFY) to this process's hot set and to clients listening on ``memory://NAME``.

Who hears a view change
    A client opens a ``subscriptions/listen`` stream (protocol 2026-07-28). ``TenantBus`` files the stream
    under the caller that opened it, and an update of tenant T's view reaches T's streams only, and only
    those whose channels may read that view. Only the URI is sent, never the content.

Over stdio
    One process serves one tenant; listening works as above.

Over streamable HTTP (stateless, JSON responses)
    A listen request is still answered as an SSE stream (the SDK makes that one exception to JSON
    responses), held open by the replica that took it; every replica LISTENs to PostgreSQL, so a change made
    anywhere reaches the listeners of every replica. The bearer token of the listen request is the caller
    the stream is filed under. Clients of earlier protocol versions cannot subscribe: ``resources/subscribe``
    is not offered (capability ``subscribe: false``), and a stateless server has no stream of its own to
    send them anything on.

When the LISTEN connection is lost
    (a database restart, a dropped connection) the relay suspends the hot set (every recall takes the
    cold path), logs a warning and reconnects with bounded exponential backoff; once back it logs that, and
    starts the hot set empty, since changes made meanwhile were missed. It never takes the server down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import anyio
import anyio.lowlevel
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError
from mcp.types import Tool

from agent_memory import __version__, resources, tools
from agent_memory.access import require
from agent_memory.caller import Caller
from agent_memory.embeddings.worker import run_embedder
from agent_memory.errors import AgentMemoryError, Unavailable
from agent_memory.runtime import Runtime
from agent_memory.server.schemas import compact
from agent_memory.store.database import CHANGES_CHANNEL, EVERYTHING_CHANGED, VIEWS_CHANNEL
from agent_memory.tools._shared import run_guarded
from agent_memory.vocabulary import VIEW_NAMES

log = structlog.get_logger(__name__)

INSTRUCTIONS = """Durable memory for agents. Call `remember` for what you see and do (messages, tool calls and
results, decisions, task updates), `supersede_decision` when a decision changes, and `handoff_packet` to pass
work to another agent. Read `memory://identity` and `memory://rules` for who you are and what you must follow."""


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts to LISTEN again: ``first`` seconds, doubling up to ``most``."""

    first: float = 0.5
    most: float = 30.0


RECONNECT: Final = Backoff()
LISTEN: Final = "subscriptions/listen"


def build_server(
    runtime: Runtime,
    *,
    tenant_filter: str | None = None,
    reconnect: Backoff = RECONNECT,
    background_embedder: bool = False,
    **options: Any,
) -> MCPServer:
    """The MCP server for ``runtime``. View changes made by any process (``agent-memory views set``) reach
    clients of the tenant whose view changed that listen on ``memory://NAME``; ``tenant_filter`` relays only
    that tenant's (a stdio server serves one). ``background_embedder`` runs the embedder of new chunks while
    the server runs (real servers; in-memory test servers leave it off, so that vectors never appear mid-test)."""
    bus = TenantBus(runtime.identify)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            ready = anyio.Event()
            group.start_soon(_relay_changes, runtime, bus, tenant_filter, ready, reconnect)
            if background_embedder:
                group.start_soon(partial(run_embedder, runtime, tenant_filter=tenant_filter))
            await ready.wait()
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    server: MCPServer = MemoryServer(
        name="agent-memory",
        title="agent-memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        subscriptions=bus,
        **options,
    )
    server.middleware.append(bus.admit)
    tools.register_all(server, runtime)
    resources.register_all(server, runtime, run_guarded)
    return server


class MemoryServer(MCPServer):
    """The SDK's server, listing each tool's output schema compacted (``schemas.compact``): clients check every
    result against it, and without references to resolve they check a recall's bundle a quarter faster."""

    async def list_tools(self) -> list[Tool]:
        listed = await super().list_tools()
        return [
            t if t.output_schema is None else t.model_copy(update={"output_schema": compact(t.output_schema)})
            for t in listed
        ]


class TenantBus:
    """The SDK's ``SubscriptionBus``, by tenant. ``subscribe`` runs in the ``subscriptions/listen`` request (the
    SDK's ``ListenHandler``), so the caller identified there is the one who listens: its stream is filed under
    that caller, who must be allowed to read resources (``admit`` refuses others first). ``publish_to(tenant,
    event)`` reaches only that tenant's streams, and a view's update only the streams whose channels may read
    the view."""

    def __init__(self, identify: Callable[[], Caller]) -> None:
        self._identify = identify
        self._listeners: dict[object, tuple[Caller, Callable[[ServerEvent], None]]] = {}

    def listener(self) -> Caller:
        """The caller of the current request, if it may listen (it must be allowed to read resources)."""
        try:
            caller = self._identify()
            require(caller, "read_resource")
        except AgentMemoryError as exc:
            raise MCPError(resources.INVALID_REQUEST, f"{exc.code}: {exc.message}", exc.as_dict()) from exc
        return caller

    async def admit(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: refuse a ``subscriptions/listen`` of a caller who may not listen before the SDK
        opens its stream (refused later, in ``subscribe``, the SDK would leave that stream's buffers unclosed)."""
        if ctx.method == LISTEN:
            self.listener()
        return await call_next(ctx)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """File ``listener`` under the caller of the current request."""
        caller = self.listener()
        token = object()
        self._listeners[token] = (caller, listener)

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def publish_to(self, tenant: str, event: ServerEvent) -> None:
        """Deliver ``event`` to the streams of ``tenant`` that may hear it."""
        for caller, listener in list(self._listeners.values()):
            if caller.tenant == tenant and _may_hear(caller, event):
                _deliver(listener, event)
        await anyio.lowlevel.checkpoint()  # let the streams drain between a burst of publishes

    async def publish(self, event: ServerEvent) -> None:
        """Deliver ``event`` to every stream of every tenant: only for events that are the same for all (a list
        of tools changed). A resource update names no tenant here, so it is dropped: use ``publish_to``."""
        if isinstance(event, ResourceUpdated):
            log.error("a resource update without its tenant was dropped", uri=event.uri)
            return
        for _, listener in list(self._listeners.values()):
            _deliver(listener, event)
        await anyio.lowlevel.checkpoint()


def _may_hear(caller: Caller, event: ServerEvent) -> bool:
    if isinstance(event, ResourceUpdated) and event.uri.startswith("memory://"):
        name = event.uri.removeprefix("memory://")
        return name not in VIEW_NAMES or resources.may_read_view(caller, name)
    return True


def _deliver(listener: Callable[[ServerEvent], None], event: ServerEvent) -> None:
    try:
        listener(event)
    except Exception:  # fan-out boundary: one broken stream must not starve the others
        log.exception("a subscription listener failed; continuing")


async def _relay_changes(
    runtime: Runtime, bus: TenantBus, tenant_filter: str | None, ready: anyio.Event, reconnect: Backoff
) -> None:
    """LISTEN for changes made by any process: drop what they touched from the hot set, and publish
    ``memory://NAME`` updates to the tenant's listeners when a view changed. Sets ``ready`` once listening;
    a first connection that fails is raised (the server does not start), a later loss is survived."""
    delay, attempt = reconnect.first, 0
    while True:
        try:
            async with runtime.db.listen(VIEWS_CHANNEL, CHANGES_CHANNEL) as notifications:
                if ready.is_set():  # whatever changed meanwhile went unheard
                    runtime.hot.resume()
                    runtime.db.forget_known_tenants()
                    log.info("LISTEN connection re-established; the hot set starts empty", attempts=attempt)
                ready.set()
                delay, attempt = reconnect.first, 0
                async for channel, payload in notifications:
                    await _apply(runtime, bus, tenant_filter, channel, payload)
        except Unavailable as exc:
            if not ready.is_set():
                raise
            reason = exc.message
        except Exception as exc:  # the boundary: a bug here must not take the server down
            if not ready.is_set():
                raise
            log.exception("the change relay failed")
            reason = f"{exc.__class__.__name__}: {exc}"
        if attempt == 0:
            runtime.hot.suspend()
            log.warning("LISTEN connection lost; the hot set is bypassed until it is back", reason=reason)
        else:
            log.warning("cannot LISTEN yet", reason=reason, attempts=attempt, retry_in=delay)
        attempt += 1
        await anyio.sleep(delay)
        delay = min(delay * 2, reconnect.most)


async def _apply(runtime: Runtime, bus: TenantBus, tenant_filter: str | None, channel: str, payload: str) -> None:
    if channel == CHANGES_CHANNEL:
        runtime.hot.invalidate_payload(payload)
        if payload == EVERYTHING_CHANGED:  # a restore, say: tenants may be gone
            runtime.db.forget_known_tenants()
        elif payload.endswith("/*"):  # everything of one tenant (a forget): its newest chunks are counted again
            runtime.db.forget_reach(payload.removesuffix("/*"))
        return
    tenant, _, name = payload.partition("/")
    runtime.hot.invalidate(tenant, "*")
    if tenant_filter is None or tenant == tenant_filter:
        await bus.publish_to(tenant, ResourceUpdated(uri=f"memory://{name}"))
