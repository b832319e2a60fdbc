"""The one error taxonomy of agent-memory.

Every failure a caller can act on is one of these, raised by the domain or translated by ``store/``
from asyncpg, and turned into an MCP tool error (``isError``) by ``tools/``::

    AgentMemoryError
    ├── InvalidInput      a field's value is wrong: names the field, the bad value and what is allowed
    ├── NotFound          an id that does not exist in the caller's tenant
    ├── Conflict          the request clashes with current state (e.g. superseding a superseded decision)
    ├── Forbidden         the caller lacks the role or channel for this action
    ├── RateLimited       too many calls; says when to retry
    └── Unavailable       the database or another dependency cannot serve right now
        └── Retryable     a transaction aborted by a conflict (deadlock, serialization): retry it

Messages are written for the model that made the call: what was wrong, and what is allowed.
"""

from __future__ import annotations

from typing import Any


class AgentMemoryError(Exception):
    """Base of every error agent-memory reports to callers."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        """The error as the one JSON shape used everywhere: ``{"error": code, "message": ..., **details}``."""
        return {"error": self.code, "message": self.message, **self.details}


class InvalidInput(AgentMemoryError):
    """A field's value is not acceptable."""

    code = "invalid_input"

    def __init__(self, field: str, problem: str, allowed: str | None = None) -> None:
        message = f"{field}: {problem}"
        if allowed:
            message += f"; allowed: {allowed}"
        super().__init__(message, field=field)
        self.field = field


class NotFound(AgentMemoryError):
    """An id that does not exist in the caller's tenant (other tenants' ids are indistinguishable)."""

    code = "not_found"

    def __init__(self, kind: str, ident: str, field: str | None = None) -> None:
        where = f"{field}: " if field else ""
        super().__init__(f"{where}no {kind} with id {ident!r} exists in this tenant", kind=kind, id=ident)


class Conflict(AgentMemoryError):
    """The request clashes with the current state."""

    code = "conflict"


class Forbidden(AgentMemoryError):
    """The caller may not do this."""

    code = "forbidden"


class RateLimited(AgentMemoryError):
    """Too many calls; retry after ``retry_after`` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after=round(retry_after, 3))
        self.retry_after = retry_after


class Unavailable(AgentMemoryError):
    """A dependency (usually the database) cannot serve the request right now."""

    code = "unavailable"


class Retryable(Unavailable):
    """A transaction the database aborted to resolve a conflict; running it again normally succeeds."""
