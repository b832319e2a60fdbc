"""What every tool module shares: the guard (role check, audit, error translation) and the result shape."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import structlog
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from agent_memory import audit
from agent_memory.access import require
from agent_memory.caller import Caller
from agent_memory.errors import AgentMemoryError, RateLimited, Unavailable
from agent_memory.runtime import Runtime

log = structlog.get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def guarded(runtime: Runtime, action: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wrap a tool: check the caller's role for ``action``, audit the call (also when it fails), and turn the
    domain's errors into tool errors (``isError``) the calling model can read and act on, e.g.
    ``not_found: refs[0]: no event or decision with id 'evt_…' exists in this tenant``."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            request_id = uuid.uuid4().hex
            started = time.perf_counter()
            caller = None
            try:
                caller = runtime.identify()
                with structlog.contextvars.bound_contextvars(request_id=request_id, tenant=caller.tenant):
                    require(caller, action)
                    if runtime.limiter is not None:
                        await runtime.limiter.check(caller)
                    outcome = await fn(*args, **kwargs)
            except AgentMemoryError as exc:
                if caller is not None:
                    await _audit(runtime, caller, action, started, request_id, None, exc.code)
                retry = f" (retry_after={exc.retry_after:.3f})" if isinstance(exc, RateLimited) else ""
                raise ToolError(f"{exc.code}: {exc.message}{retry}") from exc
            except TimeoutError as exc:
                if caller is not None:
                    await _audit(runtime, caller, action, started, request_id, None, Unavailable.code)
                raise ToolError(f"{Unavailable.code}: the database did not answer in time; retry") from exc
            except Exception as exc:  # the boundary: a bug must still be audited and answered clearly
                log.exception("tool failed unexpectedly", action=action, request_id=request_id)
                if caller is not None:
                    await _audit(runtime, caller, action, started, request_id, None, "internal")
                raise ToolError(f"internal: the server failed on this call (request {request_id})") from exc
            structured = outcome.structured_content if isinstance(outcome, CallToolResult) else None
            await _audit(runtime, caller, action, started, request_id, structured, None)
            return outcome

        return wrapper

    return decorate


async def _audit(
    runtime: Runtime,
    caller: Caller,
    action: str,
    started: float,
    request_id: str,
    structured: Any,
    error: str | None,
) -> None:
    await audit.finish(
        runtime.db,
        runtime.metrics,
        caller,
        action,
        started=started,
        request_id=request_id,
        resource_ids=audit.ids_in(structured),
        error=error,
    )


def result(model: BaseModel, text: str) -> CallToolResult:
    """A tool result carrying ``model`` as structured content and ``text`` as its readable rendering."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
    )


def as_json(model: BaseModel) -> str:
    """Compact JSON of ``model`` for a text rendering."""
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False)
