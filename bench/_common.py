"""What the benchmark scripts share: a database to run in, the server as a real process, percentiles, and what
a process holds (memory, file descriptors, its descendants) read from ``/proc``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import asyncpg
from anyio.abc import Process

from agent_memory.replay.targets import free_port, wait_until_ready
from agent_memory.store.embedded import EmbeddedPostgres

APPLICATION = "agent-memory-bench"  # the server's connections carry it, so they can be counted
TOPICS = (  # work topics the synthetic messages of scale.py and throughput.py are about
    "billing", "invoice", "deploy", "schema", "latency", "cache", "refund",
    "audit", "release", "rollback", "queue", "retry", "worker",
)  # fmt: skip


@asynccontextmanager
async def database(url: str | None, name: str = "bench") -> AsyncIterator[str]:
    """``url`` as given, or a fresh database ``name`` in a throw-away embedded PostgreSQL."""
    if url is not None:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="am-bench-", dir="/tmp"))
    await anyio.Path(data_dir).chmod(0o755)  # the unprivileged PostgreSQL account must reach it as root
    embedded = EmbeddedPostgres(data_dir)
    try:
        embedded.acquire()
        admin = await asyncpg.connect(embedded.dsn("postgres"))
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.close()
        yield embedded.dsn(name)
    finally:
        embedded.release()
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class Server:
    """A running ``agent-memory serve --http``."""

    process: Process
    base_url: str
    jwt_secret: str

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"


@asynccontextmanager
async def http_server(dsn: str, *, stderr: int | IO[Any] | None = None, **settings: str) -> AsyncIterator[Server]:
    """The server on ``dsn`` (its connections named ``APPLICATION``), rate limits lifted, ready when yielded.

    ``stderr`` is where its log goes (as for ``subprocess.Popen``): by default ours (warnings and errors only).
    Never a pipe that nothing reads: it fills after 64 KiB of log lines (slow-query warnings under load, say),
    and the server then blocks on its next log line.
    """
    secret = secrets.token_urlsafe(32)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env.update(
        AGENT_MEMORY_DATABASE_URL=dsn + ("&" if "?" in dsn else "?") + f"application_name={APPLICATION}",
        AGENT_MEMORY_JWT_SECRET=secret,
        AGENT_MEMORY_HTTP_PORT=str(port),
        AGENT_MEMORY_RATE_LIMIT_TENANT="0",
        AGENT_MEMORY_RATE_LIMIT_AGENT="0",
        AGENT_MEMORY_LOG_LEVEL="warning",
    )
    env.update({f"AGENT_MEMORY_{key.upper()}": value for key, value in settings.items()})
    command = [sys.executable, "-m", "agent_memory", "serve", "--http"]
    process = await anyio.open_process(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
    )
    try:
        server = Server(process, f"http://127.0.0.1:{port}", secret)
        await wait_until_ready(server.base_url, process)
        yield server
    finally:
        process.terminate()
        await process.wait()


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``seconds``, in milliseconds."""
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (Linux), or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def open_fds(pid: int) -> int | None:
    """How many file descriptors process ``pid`` has open (Linux), or None."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _parents() -> dict[int, int]:
    """Every live process's parent, by pid."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")"
        parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    return parents


def processes_with(marker: str) -> list[int]:
    """The pids other than ours whose command line contains ``marker`` (e.g. a data directory only one cluster
    uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command:
                found.append(int(entry.name))
    return found


def process_tree(roots: Iterable[int]) -> set[int]:
    """``roots`` and all their live descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    tree, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def memory_of(pids: Iterable[int]) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over ``pids``. RSS counts shared pages once per process (PostgreSQL's shared
    buffers once per backend); PSS splits them among the processes sharing them, so its sum is the real total.
    """
    rss = pss = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for line in rollup.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return rss, pss


def write_report(path: Path | None, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``path`` (its folder made as needed); nothing when ``path`` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
