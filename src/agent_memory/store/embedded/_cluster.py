"""The cluster of a data directory: its binaries, socket directory and log; initdb, start, stop, psql."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import stat
import time
from pathlib import Path

import structlog

from agent_memory.store.embedded._account import _Account, _current_account, _make_dir
from agent_memory.store.embedded._install import _copy_install, _Install, _package_install
from agent_memory.store.embedded._proc import _Postmaster, _read_lock_file, _read_postmaster
from agent_memory.store.embedded._shared import (
    _PG_MAJOR,
    _POLL_INTERVAL,
    DATABASE,
    PORT,
    SUPERUSER,
    EmbeddedPostgresError,
)

_log = structlog.get_logger(__name__)

_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+=@~:-]+")  # needs no quoting in unix_socket_directories
_SERVER_SETTINGS = ("max_connections=200", "shared_buffers=128MB")
_START_RETRY_FOR = 15.0
_READY_TIMEOUT = 30.0
_EXIT_GRACE = 10.0  # how long a stopped postmaster may take to exit after pg_ctl returns
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_LOG_TAIL_LINES = 25
# Start failures that go away once the remains of a killed postmaster (zombie, orphaned backends) are gone:
# 'lock file "..." already exists', 'pre-existing shared memory block ... is still in use', EADDRINUSE.
_TRANSIENT_START_FAILURES = ("already exists", "is still in use", "Address already in use")


class _Cluster:
    """The PostgreSQL side of ``EmbeddedPostgres``: everything that runs or inspects the binaries.

    ``EmbeddedPostgres.__init__`` sets the attributes declared here.
    """

    data_dir: Path
    pgdata: Path
    _log_path: Path
    _install: _Install | None

    # binaries, directories

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
        # pg_ctl returns once postmaster.pid is gone; the postmaster itself may still be exiting for a moment
        deadline = time.monotonic() + _EXIT_GRACE
        while postmaster.running() and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
        if postmaster.running():
            raise EmbeddedPostgresError(
                f"could not stop PostgreSQL (pid {postmaster.pid}) on {self.pgdata}: {result.stderr.strip()}"
            )
        _log.info("embedded_postgres.stopped", data_dir=str(self.data_dir), pid=postmaster.pid)
