"""`agent-memory serve --http` as a real process for tests: a free loopback port, an environment holding only
the settings the test gives, and a wait until it is ready (the replay harness's own ``wait_until_ready``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from agent_memory.replay.targets import ServerNotReady, free_port, wait_until_ready

STOP_SECONDS = 20  # how long a server still running when its test ends gets to stop before it is killed


@dataclass(frozen=True)
class HttpServer:
    """A launched server: its process and where it listens."""

    process: Process
    base_url: str

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"


def tail(log: Path | None, chars: int = 4000) -> str:
    """The end of a server's log, for a failure message."""
    if log is None or not log.exists():
        return "(no log kept)"
    return log.read_text(errors="replace")[-chars:]


@asynccontextmanager
async def http_server(database_url: str, *, log: Path | None = None, **settings: str) -> AsyncIterator[HttpServer]:
    """`agent-memory serve --http` on ``database_url`` and a free loopback port, ready when yielded.

    ``settings`` become ``AGENT_MEMORY_<NAME>`` variables (``jwt_secret="..."``, ``auth="none"``); nothing else
    of the test's own ``AGENT_MEMORY_*`` environment reaches the server. Its stderr goes to ``log`` if given.
    A server still running at the end is stopped with SIGTERM (SIGKILL after ``STOP_SECONDS``).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env.update({f"AGENT_MEMORY_{name.upper()}": value for name, value in settings.items()})
    env.update(AGENT_MEMORY_DATABASE_URL=database_url, AGENT_MEMORY_HTTP_PORT=str(port))
    command = [sys.executable, "-m", "agent_memory", "serve", "--http"]
    with log.open("wb") if log is not None else nullcontext(subprocess.DEVNULL) as stderr:
        process = await anyio.open_process(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            await wait_until_ready(base_url, process)
        except ServerNotReady as exc:
            pytest.fail(f"{exc}\nserver log (tail):\n{tail(log)}")
        yield HttpServer(process, base_url)
    finally:
        with anyio.move_on_after(STOP_SECONDS, shield=True) as stopping:
            if process.returncode is None:
                process.terminate()
            await process.wait()
        if stopping.cancelled_caught:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()
