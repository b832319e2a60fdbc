"""Views: small human-curated documents (identity, rules, preferences, glossary), plain text people edit.

Writing one notifies every server process (PostgreSQL NOTIFY on ``agent_memory_views``), which tells the
MCP clients subscribed to ``memory://NAME``.
"""

from __future__ import annotations

from agent_memory.errors import InvalidInput
from agent_memory.redact import redact
from agent_memory.store.database import Database
from agent_memory.store.rows import ViewRow
from agent_memory.text import estimate_tokens
from agent_memory.vocabulary import VIEW_NAMES

VIEW_MAX_CHARS = 200_000


def check_name(name: str) -> str:
    """``name`` if it is a view name, else a clear error listing the names."""
    if name not in VIEW_NAMES:
        raise InvalidInput("name", f"{name!r} is not a view", ", ".join(VIEW_NAMES))
    return name


async def set_view(db: Database, tenant: str, name: str, body: str, updated_by: str) -> ViewRow:
    """Replace view ``name`` of ``tenant`` (secrets redacted); bumps its version and notifies subscribers."""
    check_name(name)
    if len(body) > VIEW_MAX_CHARS:
        raise InvalidInput("body", f"{len(body)} characters", f"at most {VIEW_MAX_CHARS}")
    clean = redact(body).text
    async with db.transaction(tenant, writes=True) as tx:
        await tx.ensure_tenant()
        return await tx.set_view(name, clean, estimate_tokens(clean) if clean else 1, updated_by)


async def get_view(db: Database, tenant: str, name: str) -> ViewRow | None:
    """View ``name`` of ``tenant``, or None when nobody has written it yet."""
    check_name(name)
    async with db.transaction(tenant) as tx:
        return await tx.get_view(name)
