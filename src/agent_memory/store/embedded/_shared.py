"""What every part of the embedded PostgreSQL shares: its names, its error, its status report, its default place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent_memory.errors import Unavailable

SERVICE_USER = "agent-memory"
DATABASE = "agent_memory"
SUPERUSER = "postgres"
PORT = 5432

_PG_MAJOR = "18"
_POLL_INTERVAL = 0.05


class EmbeddedPostgresError(Unavailable):
    """The embedded PostgreSQL cannot be located, created, started, stopped or reached."""


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``EmbeddedPostgres.status`` saw, for the ``doctor`` command."""

    data_dir: Path
    pgdata: Path
    initialized: bool
    running: bool
    pid: int | None
    socket_dir: Path | None
    handles: list[int]
    postgres_version: str | None
    dsn: str | None


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/agent-memory`` or ``~/.local/share/agent-memory``; ``/var/lib/agent-memory`` as root.

    Root gets a system location so that no home directory has to be opened to the service user.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/agent-memory")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "agent-memory"
