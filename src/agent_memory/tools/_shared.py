"""What every tool module shares: the guard (role check, rate limit, audit, error translation) and the result
shape.

``run_guarded`` is the one guard of every tool call *and* resource read; ``guarded`` wraps a tool in it, and
the server hands it to ``resources`` (which may not import ``tools``). Each surface says how a failure reaches
its client: a tool error (``isError``) here, a JSON-RPC error for a resource.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import ParamSpec, TypeVar

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

INTERNAL = "internal"  # the code of a failure that is a bug of ours, not the caller's doing

Failure = Callable[[str, str, AgentMemoryError | None], Exception]
"""Builds the protocol error for a failed call from its code, its message and the domain error (if it was one)."""


def describe(error: AgentMemoryError) -> str:
    """The message a client is shown for ``error``, with when to retry if it is a rate limit."""
    retry = f" (retry_after={error.retry_after:.3f})" if isinstance(error, RateLimited) else ""
    return f"{error.message}{retry}"


async def run_guarded(
    runtime: Runtime,
    action: str,
    body: Callable[[Caller], Awaitable[R]],
    *,
    failure: Failure,
    audited: Callable[[R | None], Iterable[str]] = lambda _: (),
) -> R:
    """Run ``body`` for the verified caller once it holds the role ``action`` needs and is within its rate
    limit, and audit the call with the ids ``audited`` names (also when it fails: with ``None``). A failure is
    raised as ``failure(code, message, error)``: a domain error with its own code and message; a database
    that did not answer in time as ``unavailable``; anything else, logged, as ``internal``."""
    request_id = uuid.uuid4().hex
    started = time.perf_counter()
    caller: Caller | None = None

    async def failed(code: str, message: str, error: AgentMemoryError | None) -> Exception:
        if caller is not None:
            await _audit(runtime, caller, action, started, request_id, audited(None), code)
        return failure(code, message, error)

    try:
        caller = runtime.identify()
        with structlog.contextvars.bound_contextvars(
            request_id=request_id, tenant=caller.tenant, principal=caller.principal, action=action
        ):
            require(caller, action)
            if runtime.limiter is not None:
                await runtime.limiter.check(caller)
            outcome = await body(caller)
    except AgentMemoryError as exc:
        raise await failed(exc.code, describe(exc), exc) from exc
    except TimeoutError as exc:
        raise await failed(Unavailable.code, "the database did not answer in time; retry", None) from exc
    except Exception as exc:  # the boundary: a bug must still be audited and answered clearly
        log.exception("call failed unexpectedly", action=action, request_id=request_id)
        raise await failed(INTERNAL, f"the server failed on this call (request {request_id})", None) from exc
    await _audit(runtime, caller, action, started, request_id, audited(outcome), None)
    return outcome


def guarded(runtime: Runtime, action: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wrap a tool in ``run_guarded``; its failures become tool errors (``isError``) the calling model can read
    and act on, e.g. ``not_found: refs[0]: no event or decision with id 'evt_…' exists in this tenant``."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return await run_guarded(
                runtime, action, lambda _caller: fn(*args, **kwargs), failure=_tool_error, audited=_result_ids
            )

        return wrapper

    return decorate


def _tool_error(code: str, message: str, _error: AgentMemoryError | None) -> ToolError:
    return ToolError(f"{code}: {message}")


def _result_ids(outcome: object) -> list[str]:
    return audit.ids_in(outcome.structured_content if isinstance(outcome, CallToolResult) else None)


async def _audit(
    runtime: Runtime,
    caller: Caller,
    action: str,
    started: float,
    request_id: str,
    resource_ids: Iterable[str],
    error: str | None,
) -> None:
    await audit.finish(
        runtime.db,
        runtime.metrics,
        caller,
        action,
        started=started,
        request_id=request_id,
        resource_ids=resource_ids,
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
