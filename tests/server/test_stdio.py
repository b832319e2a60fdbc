"""The real thing over stdio: `agent-memory serve` as a subprocess, driven by the MCP client."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from agent_memory.server.stdio import GC_THRESHOLD_YOUNG, settle_heap

pytestmark = pytest.mark.anyio

EXECUTABLE = str(Path(sys.executable).parent / "agent-memory")


def _env(**values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    return {**base, "AGENT_MEMORY_LOG_LEVEL": "info", **values}


async def test_a_real_stdio_client_remembers_and_reads(database_url: str) -> None:
    """Over a real stdio pipe: the tools are listed, remember stores, a resource reads it back."""
    params = StdioServerParameters(
        command=EXECUTABLE, args=["serve"], env=_env(AGENT_MEMORY_DATABASE_URL=database_url, AGENT_MEMORY_TENANT="t1")
    )
    async with Client(params) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"remember", "supersede_decision", "handoff_packet"} <= names
        result = await client.call_tool("remember", {"text": "stdio works", "session_id": "s"})
        assert not result.is_error
        assert result.structured_content is not None
        event_id = result.structured_content["events"][0]["id"]
        read = await client.read_resource(f"memory://events/{event_id}")
        assert "stdio works" in read.contents[0].text  # type: ignore[union-attr]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="am-stdio-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_and_its_embedded_postgres(data_dir: Path, signum: signal.Signals) -> None:
    """With no database configured the server starts the embedded PostgreSQL; a signal stops both, leaves no
    postmaster behind, and nothing but protocol ever reaches stdout."""
    process = subprocess.Popen(
        [EXECUTABLE, "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(AGENT_MEMORY_DATA_DIR=str(data_dir)),
    )
    try:
        assert process.stderr is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stderr.readline().decode()
            seen.append(line)
            if "serving over stdio" in line or not line:
                break
        assert any("serving over stdio" in line for line in seen), "".join(seen)
        postmaster = _postmaster_pid(data_dir)
        assert postmaster is not None
        assert _alive(postmaster)
        process.send_signal(signum)
        stdout, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert stdout == b""
        assert _wait_for(lambda: not _alive(postmaster), 10), "postmaster left running"
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_startup_objects_are_kept_off_the_garbage_collector() -> None:
    """What a server made before serving is frozen (a full collection no longer walks it) and the young
    generation is collected less often; in this test process, then put back as it was."""
    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1_000
        assert gc.get_threshold()[0] == GC_THRESHOLD_YOUNG
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
