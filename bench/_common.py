"""What the benchmark scripts share: a database to run in, the server as a real process, percentiles."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
from anyio.abc import Process

from agent_memory.replay.targets import free_port, wait_until_ready
from agent_memory.store.embedded import EmbeddedPostgres

APPLICATION = "agent-memory-bench"  # the server's connections carry it, so they can be counted


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
async def http_server(dsn: str, **settings: str) -> AsyncIterator[Server]:
    """The server on ``dsn`` (its connections named ``APPLICATION``), rate limits lifted, ready when yielded."""
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
    process = await anyio.open_process(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
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
