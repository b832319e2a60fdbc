"""``wait_until_ready``: how the harness and the tests wait for a launched ``serve --http``."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from agent_memory.replay.targets import ServerNotReady, free_port, wait_until_ready

pytestmark = pytest.mark.anyio


async def test_a_process_that_exits_is_reported_at_once_with_its_exit_code() -> None:
    """A server that dies before it is ready is reported with its exit code, without waiting out the timeout."""
    async with await anyio.open_process([sys.executable, "-c", "raise SystemExit(3)"]) as process:
        with anyio.fail_after(10), pytest.raises(ServerNotReady, match=r"exited with 3 before .*/readyz answered 200"):
            await wait_until_ready(f"http://127.0.0.1:{free_port()}", process, within=60)


async def test_a_server_that_never_answers_is_reported_after_the_timeout() -> None:
    """A live process that never listens is reported after ``within`` seconds, with the last error seen."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as process:
        try:
            with pytest.raises(ServerNotReady, match=r"did not answer 200 within 0\.5 s; last answer: ConnectError"):
                await wait_until_ready(f"http://127.0.0.1:{free_port()}", process, within=0.5)
        finally:
            process.kill()
