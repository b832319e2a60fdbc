"""Processes and lock files: liveness by pid and start time, postmaster.pid, the flock on a directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from agent_memory.store.embedded._shared import PORT, SUPERUSER


def _process_start(pid: int) -> int | None:
    """The start time of a live process (field 22 of /proc/<pid>/stat), or None if it is dead or a zombie."""
    if pid <= 0:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        return 0 if _signalable(pid) else None  # no /proc (macOS): liveness only, start time unknown
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()  # the command name may contain spaces and parentheses
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return None
    return int(fields[19])


def _signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a live PostgreSQL process (not a zombie, not a recycled pid of another program)."""
    if _process_start(pid) is None:
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip() == "postgres"
    except FileNotFoundError:
        return not Path("/proc/self/comm").exists()
    except OSError:
        return False


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """Hold an flock on ``directory`` itself (without one if it cannot be opened for reading)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Handle:
    """One user of the cluster: a process (pid + start time, so a recycled pid is not mistaken for it)."""

    pid: int
    start: int
    id: str

    def alive(self) -> bool:
        return _process_start(self.pid) == self.start


@dataclass(frozen=True)
class _Postmaster:
    """The parts of ``<pgdata>/postmaster.pid`` we use."""

    pid: int
    port: int
    socket_dir: Path | None
    state: str

    def running(self) -> bool:
        return _is_postgres(self.pid)


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    return _read_lock_file(pgdata / "postmaster.pid")


def _read_lock_file(path: Path) -> _Postmaster | None:
    """Parse postmaster.pid (pid, data dir, start time, port, socket dir, host, shmem, state) or a socket's
    lock file (its first lines)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    lines += [""] * (8 - len(lines))
    try:
        pid = abs(int(lines[0]))  # a standalone backend writes its pid negated
        port = int(lines[3]) if lines[3].strip() else PORT
    except ValueError:
        return None
    socket_dir = Path(lines[4].strip()) if lines[4].strip() else None
    return _Postmaster(pid=pid, port=port, socket_dir=socket_dir, state=lines[7].strip())


def _dsn(socket_dir: Path, port: int, database: str) -> str:
    host = quote(str(socket_dir), safe="/")
    return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}&port={port}"
