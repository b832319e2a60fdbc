"""Named SQL blocks from ``sql/queries.sql`` and ``sql/admin.sql`` (the data-protection commands), loaded once
into one name space.

A block starts with ``-- name: NAME``; comment lines right after it document the query. Only ``store/``
runs SQL, always by name: ``QUERIES["insert_event"]``.
"""

from __future__ import annotations

import re
from importlib import resources
from types import MappingProxyType
from typing import Final

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``; a duplicate name is a bug, so it raises."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            msg = f"query {name!r} is defined twice"
            raise ValueError(msg)
        queries[name] = body.strip()
    return queries


FILES: Final = ("queries.sql", "admin.sql")


def _load() -> MappingProxyType[str, str]:
    folder = resources.files("agent_memory.store").joinpath("sql")
    text = "\n".join(folder.joinpath(name).read_text(encoding="utf-8") for name in FILES)
    return MappingProxyType(parse(text))


QUERIES: Final = _load()
