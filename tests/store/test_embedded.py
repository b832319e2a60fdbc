"""The embedded PostgreSQL manager, with real processes and a real PostgreSQL.

Every test gets its own data directory under /tmp (made traversable: as root, PostgreSQL runs as the
unprivileged ``agent-memory`` user and must reach it). Helper processes are ``python -c CHILD``: they
acquire, print the DSN on stdout, and release when their stdin closes or on SIGTERM.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from agent_memory.store import embedded
from agent_memory.store.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    EmbeddedStatus,
    _cluster,
    _install,
    default_data_dir,
)

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="exercises running PostgreSQL as the service user")
slow = pytest.mark.slow

CHILD = """
import signal, sys
from pathlib import Path

import structlog

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout carries the DSN

from agent_memory.store.embedded import EmbeddedPostgres

pg = EmbeddedPostgres(Path(sys.argv[1]))


def on_sigterm(signum, frame):
    pg.release()
    sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
print(pg.acquire(), flush=True)
sys.stdin.read()
pg.release()
"""

# Sends itself SIGTERM right after pg_ctl has started PostgreSQL, while acquire() holds the lock.
SIGNALLED_DURING_ACQUIRE = """
import os, signal, sys
from pathlib import Path

import structlog

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

from agent_memory.store import embedded
from agent_memory.store.embedded import _account

pg = embedded.EmbeddedPostgres(Path(sys.argv[1]))


def on_sigterm(signum, frame):
    pg.release()
    sys.exit(3)


signal.signal(signal.SIGTERM, on_sigterm)
run = _account._Account.run


def run_then_signal(self, argv, **kwargs):
    result = run(self, argv, **kwargs)
    if "start" in [str(arg) for arg in argv]:
        os.kill(os.getpid(), signal.SIGTERM)
    return result


_account._Account.run = run_then_signal
pg.acquire()
print("acquire returned", flush=True)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except FileNotFoundError:
        return None


def stopped(pid: int) -> Callable[[], bool]:
    return lambda: not alive(pid)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """``<base>/data`` where ``<base>`` is a fresh 0755 directory in /tmp; PostgreSQL is stopped after."""
    base = Path(tempfile.mkdtemp(prefix="am-emb-", dir="/tmp"))
    base.chmod(0o755)  # ours to open: the service user must reach the data directory below it
    try:
        yield base / "data"
    finally:
        for pidfile in base.rglob("postmaster.pid"):
            pid = postmaster_pid(pidfile.parent)
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                wait_until(stopped(pid), f"leftover postmaster {pid} exited")
        shutil.rmtree(base, ignore_errors=True)


class Child:
    """A helper process that holds the embedded PostgreSQL of a data directory."""

    def __init__(self, data_dir: Path, stderr: IO[str], script: str) -> None:
        self.stderr = stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        self.pid = self.proc.pid

    def dsn(self, timeout: float = 30.0) -> str:
        """The DSN the child printed once it acquired."""
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if readable else ""
        if not line:
            pytest.fail(f"child {self.pid} printed no DSN; its stderr:\n{Path(self.stderr.name).read_text()}")
        return line

    def finish(self, timeout: float = 30.0) -> int:
        """Close the child's stdin (it releases and exits) and return its exit status."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        status = self.proc.wait(timeout)
        if status != 0:
            self.stderr.flush()
            print(f"child {self.pid} exited {status}; its stderr:\n{Path(self.stderr.name).read_text()}")
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.stderr.close()


@pytest.fixture
def spawn(data_dir: Path) -> Iterator[Callable[..., Child]]:
    """Start helper processes on ``data_dir``; any still running at the end are killed."""
    children: list[Child] = []

    def start(script: str = CHILD) -> Child:
        stderr = (data_dir.parent / f"child-{len(children)}.stderr").open("w")
        children.append(Child(data_dir, stderr, script))
        return children[-1]

    yield start
    for child in children:
        child.close()


def test_default_data_dir_follows_xdg_and_puts_root_in_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default data directory is $XDG_DATA_HOME/agent-memory, else ~/.local/share/agent-memory (a
    relative XDG_DATA_HOME is ignored, as the XDG spec says), and /var/lib/agent-memory for root."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("XDG_DATA_HOME", "/data/xdg")
    assert default_data_dir() == Path("/data/xdg/agent-memory")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")
    assert default_data_dir() == Path("/home/someone/.local/share/agent-memory")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir() == Path("/home/someone/.local/share/agent-memory")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_data_dir() == Path("/var/lib/agent-memory")


@slow
@pytest.mark.anyio
async def test_first_acquire_initializes_and_later_acquires_reuse_the_postmaster(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    """The first acquire runs initdb and starts PostgreSQL in under 5 s; the DSN reaches the agent_memory
    database with pgvector. Another acquire, in this process or another, joins the same postmaster in
    under 1 s."""
    pg = EmbeddedPostgres(data_dir)
    began = time.monotonic()
    with capture_logs() as logs:
        dsn = await anyio.to_thread.run_sync(pg.acquire)
    assert time.monotonic() - began < 5
    assert {"embedded_postgres.initialized", "embedded_postgres.started"} <= {log["event"] for log in logs}
    assert dsn == f"postgresql://postgres@/agent_memory?host={data_dir}/run&port=5432"
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "agent_memory"
        await conn.execute("CREATE EXTENSION vector")
        assert await conn.fetchval("SELECT '[0,3]'::vector <-> '[4,0]'::vector") == 5
    finally:
        await conn.close()
    pid = postmaster_pid(data_dir / "pgdata")
    assert pid is not None

    again = EmbeddedPostgres(data_dir)
    began = time.monotonic()
    assert await anyio.to_thread.run_sync(again.acquire) == dsn
    assert time.monotonic() - began < 1
    child = spawn()
    assert child.dsn() == dsn
    status = pg.status()
    assert status.pid == pid
    assert sorted(status.handles) == sorted([os.getpid(), os.getpid(), child.pid])

    assert child.finish() == 0
    again.release()
    assert alive(pid)
    pg.release()
    wait_until(stopped(pid), "the postmaster exited")


@slow
def test_processes_share_one_postmaster_that_stops_with_the_last_release(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    """Two processes racing to start share one postmaster (one initdb, one start); it survives the first
    release and stops with the last."""
    first, second = spawn(), spawn()
    dsn = first.dsn()
    assert second.dsn() == dsn
    pid = postmaster_pid(data_dir / "pgdata")
    assert pid is not None
    assert (data_dir / "postgres.log").read_text().count("starting PostgreSQL") == 1
    assert sorted(EmbeddedPostgres(data_dir).status().handles) == sorted([first.pid, second.pid])

    assert first.finish() == 0
    status = EmbeddedPostgres(data_dir).status()
    assert (status.running, status.pid, status.handles) == (True, pid, [second.pid])

    assert second.finish() == 0
    wait_until(stopped(pid), "the postmaster exited")
    status = EmbeddedPostgres(data_dir).status()
    assert (status.running, status.handles) == (False, [])


@slow
def test_release_from_a_sigterm_handler_stops_postgres(data_dir: Path, spawn: Callable[..., Child]) -> None:
    """A process whose SIGTERM handler calls release() stops the PostgreSQL it was the only user of."""
    child = spawn()
    child.dsn()
    pid = postmaster_pid(data_dir / "pgdata")
    assert pid is not None
    child.proc.send_signal(signal.SIGTERM)
    assert child.proc.wait(30) == 0
    wait_until(stopped(pid), "the postmaster exited")
    assert EmbeddedPostgres(data_dir).status().handles == []


@slow
def test_release_from_a_signal_handler_during_acquire_is_carried_out_when_acquire_unwinds(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    """A SIGTERM handler that calls release() while acquire() holds the lock (just after starting
    PostgreSQL) does not deadlock: the release happens as acquire unwinds, and PostgreSQL is stopped."""
    child = spawn(SIGNALLED_DURING_ACQUIRE)
    assert child.proc.wait(30) == 3
    assert child.proc.stdout is not None
    assert child.proc.stdout.read() == ""
    log = (data_dir / "postgres.log").read_text()
    assert log.index("ready to accept connections") < log.index("database system is shut down")
    status = EmbeddedPostgres(data_dir).status()
    assert (status.running, status.handles) == (False, [])


@slow
def test_a_killed_process_leaves_postgres_running_and_its_handle_is_pruned(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    """SIGKILL of a user leaves the postmaster running and a stale handle; the next acquire adopts the
    postmaster and prunes the handle, so its release stops PostgreSQL."""
    child = spawn()
    child.dsn()
    pid = postmaster_pid(data_dir / "pgdata")
    assert pid is not None
    child.proc.kill()
    child.proc.wait(30)
    recorded = json.loads((data_dir / "handles.json").read_text())["handles"]
    assert [handle["pid"] for handle in recorded] == [child.pid]
    assert alive(pid)

    pg = EmbeddedPostgres(data_dir)
    with capture_logs() as logs:
        pg.acquire()
    assert {"event": "embedded_postgres.pruned_handles", "data_dir": str(data_dir), "pids": [child.pid]} in [
        {key: log.get(key) for key in ("event", "data_dir", "pids")} for log in logs
    ]
    status = pg.status()
    assert (status.pid, status.handles) == (pid, [os.getpid()])
    pg.release()
    wait_until(stopped(pid), "the postmaster exited")


@slow
@pytest.mark.anyio
async def test_a_killed_postmaster_is_replaced_on_the_next_acquire(data_dir: Path) -> None:
    """After kill -9 of the postmaster, the next acquire starts a new one (despite the stale lock file and
    the orphaned backends) and queries work; the last release stops it."""
    holder = EmbeddedPostgres(data_dir)
    holder.acquire()
    old = postmaster_pid(data_dir / "pgdata")
    assert old is not None
    os.kill(old, signal.SIGKILL)

    pg = EmbeddedPostgres(data_dir)
    dsn = await anyio.to_thread.run_sync(pg.acquire)
    new = pg.status().pid
    assert new is not None
    assert new != old
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    holder.release()
    assert alive(new)
    pg.release()
    wait_until(stopped(new), "the new postmaster exited")


def children_of(pid: int) -> list[int]:
    """The pids of the live children of ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                children.append(int(entry.name))
    return children


@slow
def test_a_start_blocked_by_an_orphaned_backend_is_retried_then_fails_with_the_log(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a (stopped) orphaned backend of a killed postmaster still holds the shared memory, acquire
    retries for a bounded time, then fails naming the cause from the server log; once that backend is
    gone, the next acquire starts PostgreSQL."""
    holder = EmbeddedPostgres(data_dir)
    holder.acquire()
    old = postmaster_pid(data_dir / "pgdata")
    assert old is not None
    backend = children_of(old)[0]
    os.kill(backend, signal.SIGSTOP)
    try:
        os.kill(old, signal.SIGKILL)
        monkeypatch.setattr(_cluster, "_START_RETRY_FOR", 1.0)
        pg = EmbeddedPostgres(data_dir)
        with capture_logs() as logs, pytest.raises(EmbeddedPostgresError) as raised:
            pg.acquire()
        message = str(raised.value)
        assert f"could not start PostgreSQL on {data_dir / 'pgdata'}" in message
        assert "pre-existing shared memory block" in message
        assert "embedded_postgres.start_retry" in [log["event"] for log in logs]
    finally:
        os.kill(backend, signal.SIGKILL)
    wait_until(stopped(backend), "the orphaned backend exited")
    pg.acquire()
    assert pg.status().running
    holder.release()
    pg.release()
    assert not pg.status().running


@slow
def test_status_reports_the_cluster_without_starting_or_creating_anything(data_dir: Path) -> None:
    """status() describes a missing, a running and a stopped cluster, and never creates or starts one."""
    pg = EmbeddedPostgres(data_dir)
    pgdata = data_dir / "pgdata"
    fresh = pg.status()
    assert fresh.postgres_version is not None
    assert fresh.postgres_version.startswith("18.")
    assert fresh == EmbeddedStatus(
        data_dir=data_dir,
        pgdata=pgdata,
        initialized=False,
        running=False,
        pid=None,
        socket_dir=None,
        handles=[],
        postgres_version=fresh.postgres_version,
        dsn=None,
    )
    assert not data_dir.exists()

    dsn = pg.acquire()
    running = pg.status()
    assert running.pid is not None
    assert running == EmbeddedStatus(
        data_dir=data_dir,
        pgdata=pgdata,
        initialized=True,
        running=True,
        pid=postmaster_pid(pgdata),
        socket_dir=data_dir / "run",
        handles=[os.getpid()],
        postgres_version=fresh.postgres_version,
        dsn=dsn,
    )
    assert pg.dsn() == dsn
    assert pg.dsn("postgres") == dsn.replace("/agent_memory?", "/postgres?")
    with pytest.raises(EmbeddedPostgresError, match="database name '' is not allowed"):
        pg.dsn("")

    pg.release()
    pg.release()  # idempotent
    wait_until(stopped(running.pid), "the postmaster exited")
    after = pg.status()
    assert (after.initialized, after.running, after.pid) == (True, False, None)
    assert (after.handles, after.socket_dir, after.dsn) == ([], None, None)
    assert postmaster_pid(pgdata) is None


def test_a_cluster_of_another_postgres_major_is_refused_and_left_alone(data_dir: Path) -> None:
    """A pgdata made by another PostgreSQL major version is neither started nor touched: acquire fails
    naming both versions."""
    (data_dir / "pgdata").mkdir(parents=True)
    (data_dir / "pgdata" / "PG_VERSION").write_text("16\n")
    with pytest.raises(EmbeddedPostgresError) as raised:
        EmbeddedPostgres(data_dir).acquire()
    assert "holds a PostgreSQL 16 cluster, but the embedded server is PostgreSQL 18" in str(raised.value)
    assert sorted(path.name for path in (data_dir / "pgdata").iterdir()) == ["PG_VERSION"]
    assert not (data_dir / "postgres.log").exists()


@slow
def test_a_long_data_dir_path_moves_the_socket_to_a_private_tmp_dir(data_dir: Path) -> None:
    """When <data_dir>/run/.s.PGSQL.5432 would exceed the unix socket path limit, the socket lives in a
    short 0700 directory in /tmp owned by the account running PostgreSQL."""
    long_dir = data_dir / ("x" * 100)
    pg = EmbeddedPostgres(long_dir)
    dsn = pg.acquire()
    socket_dir = pg.status().socket_dir
    try:
        assert socket_dir is not None
        assert socket_dir.parent == Path("/tmp")  # noqa: S108 - asserting where the module puts it
        assert socket_dir.name.startswith("agent-memory-")
        assert f"host={socket_dir}&" in dsn
        info = socket_dir.stat()
        expected_uid = pwd.getpwnam(embedded.SERVICE_USER).pw_uid if IS_ROOT else os.geteuid()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, expected_uid)
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
    finally:
        pg.release()
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)


def _modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {path: (path.stat().st_mode, path.stat().st_uid, path.stat().st_gid) for path in paths}


@slow
@root_only
def test_as_root_postgres_runs_as_the_service_user_in_a_data_dir_it_owns(data_dir: Path) -> None:
    """As root, the data directory we create, pgdata, the socket dir and the log belong to the service user,
    which runs the postmaster; no ancestor directory's mode or owner changes."""
    ancestors = [data_dir.parent, *data_dir.parent.parents]
    before = _modes(ancestors)
    pg = EmbeddedPostgres(data_dir)
    pg.acquire()
    try:
        service = pwd.getpwnam(embedded.SERVICE_USER)
        for path in (data_dir, data_dir / "pgdata", data_dir / "run", data_dir / "postgres.log"):
            assert path.stat().st_uid == service.pw_uid, path
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        pid = postmaster_pid(data_dir / "pgdata")
        assert Path(f"/proc/{pid}").stat().st_uid == service.pw_uid
    finally:
        pg.release()
    assert _modes(ancestors) == before


@slow
@root_only
def test_as_root_an_existing_data_dir_is_used_as_it_is(data_dir: Path) -> None:
    """As root, a data directory that already exists (root's, 0755) is used without changing its owner or
    mode; what we create inside it belongs to the service user."""
    data_dir.mkdir(mode=0o755)
    before = _modes([data_dir, *data_dir.parents])
    pg = EmbeddedPostgres(data_dir)
    pg.acquire()
    try:
        assert (data_dir / "pgdata").stat().st_uid == pwd.getpwnam(embedded.SERVICE_USER).pw_uid
    finally:
        pg.release()
    assert _modes([data_dir, *data_dir.parents]) == before


@root_only
def test_as_root_an_ancestor_the_service_user_cannot_cross_is_named_and_left_alone(data_dir: Path) -> None:
    """As root, a data directory below a 0700 directory fails with an error naming that directory and
    suggesting a reachable location; nothing is created and the directory keeps its mode."""
    private = data_dir.parent / "private"
    private.mkdir(mode=0o700)
    pg = EmbeddedPostgres(private / "data")
    with pytest.raises(EmbeddedPostgresError) as raised:
        pg.acquire()
    message = str(raised.value)
    assert f"{private} (mode 700" in message
    assert "/var/lib/agent-memory" in message
    assert "AGENT_MEMORY_DATA_DIR" in message
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert list(private.iterdir()) == []


@slow
@root_only
def test_as_root_binaries_the_service_user_cannot_reach_are_copied_into_the_data_dir(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, when the service user cannot run the installed binaries (here: reached through a 0700
    directory), they are copied once into <data_dir>/runtime/pg18-<version>, which runs PostgreSQL."""
    installed = _install._package_install()
    hidden = data_dir.parent / "hidden"
    hidden.mkdir(mode=0o700)
    package = Path(_install._PACKAGE)
    for name in (package, f"{package}.libs"):
        (hidden / name).symlink_to(installed.root / name)  # the same files, behind a 0700 directory
    monkeypatch.setattr(_cluster, "_package_install", lambda: _install._Install(hidden, installed.version))

    pg = EmbeddedPostgres(data_dir)
    pg.acquire()
    runtime = data_dir / "runtime" / f"pg18-{installed.version}"
    try:
        pid = postmaster_pid(data_dir / "pgdata")
        assert Path(f"/proc/{pid}/exe").resolve() == runtime / package / "pginstall18" / "bin" / "postgres"
    finally:
        pg.release()
    marker = (runtime / ".complete").stat().st_mtime_ns
    again = EmbeddedPostgres(data_dir)
    again.acquire()
    again.release()
    assert (runtime / ".complete").stat().st_mtime_ns == marker
