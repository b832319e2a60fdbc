"""``EmbeddedPostgres``: acquire and release the cluster of a data directory, shared by every process."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from agent_memory.store.embedded._account import (
    _Account,
    _check_reachable,
    _current_account,
    _make_dir,
    _make_parents,
    _service_account,
)
from agent_memory.store.embedded._cluster import _Cluster
from agent_memory.store.embedded._install import _Install
from agent_memory.store.embedded._proc import _directory_locked, _dsn, _Handle, _process_start, _read_postmaster
from agent_memory.store.embedded._shared import (
    _POLL_INTERVAL,
    DATABASE,
    PORT,
    EmbeddedPostgresError,
    EmbeddedStatus,
)

_log = structlog.get_logger(__name__)

_LOCK_TIMEOUT = 120.0


class EmbeddedPostgres(_Cluster):
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
