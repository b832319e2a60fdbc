"""What every tool module shares: error translation and the structured-plus-text result."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from agent_memory.errors import AgentMemoryError, Unavailable

P = ParamSpec("P")
R = TypeVar("R")


def domain_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the domain's errors into tool errors (``isError``) the calling model can read and act on.

    The message starts with the error code and carries the details as JSON, e.g.
    ``not_found: refs[0]: no event or decision with id 'evt_…' exists in this tenant``.
    """

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except AgentMemoryError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from exc
        except TimeoutError as exc:
            raise ToolError(f"{Unavailable.code}: the database did not answer in time; retry") from exc

    return wrapper


def result(model: BaseModel, text: str) -> CallToolResult:
    """A tool result carrying ``model`` as structured content and ``text`` as its readable rendering."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
    )


def as_json(model: BaseModel) -> str:
    """Compact JSON of ``model`` for a text rendering."""
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False)
