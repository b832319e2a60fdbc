"""Where a replay sends its calls: a real MCP client per tenant, over stdio or streamable HTTP.

- ``StdioTarget``: one ``agent-memory serve`` subprocess per tenant (``AGENT_MEMORY_TENANT``); ``restart``
  stops and relaunches them.
- ``SpawnedHttpTarget``: one ``serve --http`` subprocess on a free loopback port, a token minted per tenant;
  ``restart`` stops and relaunches it.
- ``RemoteHttpTarget``: a running server, with one ``--token`` (one tenant) or ``--jwt-secret`` to mint one
  per tenant; ``restart`` only reconnects.

``wait_until_ready`` is how anything that launches ``serve --http`` (this harness, the tests) waits for it.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Protocol

import anyio
import httpx2
import jwt
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

SERVER_COMMAND = [sys.executable, "-m", "agent_memory", "serve"]
TOKEN_TTL_SECONDS = 3600
READY_TIMEOUT_SECONDS = 60
READY_POLL_SECONDS = 0.1


class TargetError(Exception):
    """The target cannot do what a step asks (e.g. switch tenant with a single token)."""


class ServerNotReady(TargetError):
    """A launched HTTP server exited, or did not answer ``/readyz`` with 200 in time."""


class Target(Protocol):
    """What the runner needs from a transport."""

    name: str

    async def client(self, tenant: str, agent: str) -> Client: ...

    async def restart(self) -> None: ...

    async def close(self) -> None: ...


def mint_token(secret: str, tenant: str, agent: str) -> str:
    """An HS256 bearer token for ``tenant`` with every role."""
    claims = {
        "sub": agent,
        "tenant": tenant,
        "roles": ["reader", "writer", "curator", "admin"],
        "exp": int(time.time()) + TOKEN_TTL_SECONDS,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env.update(AGENT_MEMORY_DATABASE_URL=database_url, AGENT_MEMORY_LOG_LEVEL="warning", **extra)
    return env


class _Clients:
    """Connected clients by tenant, closed together."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._clients: dict[str, Client] = {}

    async def get(self, tenant: str, make: Callable[[], AbstractAsyncContextManager[Client]]) -> Client:
        if tenant not in self._clients:
            self._clients[tenant] = await self._stack.enter_async_context(make())
        return self._clients[tenant]

    async def close(self) -> None:
        self._clients.clear()
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()


class StdioTarget:
    """``agent-memory serve`` over stdio, one process per tenant, on the given database."""

    name = "stdio"

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._clients = _Clients()

    async def client(self, tenant: str, agent: str) -> Client:
        # over stdio the agent is named per call (agent_id); one server per tenant serves them all
        del agent
        params = StdioServerParameters(
            command=SERVER_COMMAND[0],
            args=SERVER_COMMAND[1:],
            env=_server_env(self._database_url, AGENT_MEMORY_TENANT=tenant),
        )
        return await self._clients.get(tenant, lambda: Client(params))

    async def restart(self) -> None:
        await self._clients.close()

    async def close(self) -> None:
        await self._clients.close()


class RemoteHttpTarget:
    """A running streamable HTTP server."""

    name = "http"

    def __init__(self, url: str, *, token: str | None = None, jwt_secret: str | None = None) -> None:
        self._url = url
        self._token = token
        self._secret = jwt_secret
        self._clients = _Clients()
        self._single_tenant: str | None = None

    def _token_for(self, tenant: str, agent: str) -> str | None:
        if self._secret is not None:
            return mint_token(self._secret, tenant, agent)
        if self._single_tenant not in {None, tenant} and self._token is not None:
            msg = "switching tenant needs --jwt-secret (one --token serves one tenant)"
            raise TargetError(msg)
        self._single_tenant = tenant
        return self._token

    async def client(self, tenant: str, agent: str) -> Client:
        """A client per tenant and agent: a token names one agent of one tenant."""

        @asynccontextmanager
        async def connect() -> AsyncIterator[Client]:
            token = self._token_for(tenant, agent)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0)) as http,
                Client(streamable_http_client(self._url, http_client=http)) as connected,
            ):
                yield connected

        key = tenant if self._secret is None else f"{tenant}/{agent}"
        return await self._clients.get(key, connect)

    async def restart(self) -> None:
        await self._clients.close()

    async def close(self) -> None:
        await self._clients.close()


class SpawnedHttpTarget(RemoteHttpTarget):
    """``agent-memory serve --http`` launched (and restarted) by the replay on a free loopback port."""

    def __init__(self, database_url: str) -> None:
        self._port = free_port()
        self._env = _server_env(
            database_url,
            AGENT_MEMORY_JWT_SECRET=secrets.token_urlsafe(32),
            AGENT_MEMORY_HTTP_PORT=str(self._port),
        )
        super().__init__(f"http://127.0.0.1:{self._port}/mcp", jwt_secret=self._env["AGENT_MEMORY_JWT_SECRET"])
        self._process: Process | None = None

    async def client(self, tenant: str, agent: str) -> Client:
        if self._process is None:
            await self._launch()
        return await super().client(tenant, agent)

    async def _launch(self) -> None:
        self._process = await anyio.open_process(
            [*SERVER_COMMAND, "--http"],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_until_ready(self._url.removesuffix("/mcp"), self._process)

    async def _stop(self) -> None:
        await self._clients.close()
        if self._process is not None:
            self._process.terminate()
            await self._process.wait()
            await self._process.aclose()
            self._process = None

    async def restart(self) -> None:
        await self._stop()

    async def close(self) -> None:
        await self._stop()


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _exit_code(process: Process | subprocess.Popen[bytes]) -> int | None:
    return process.poll() if isinstance(process, subprocess.Popen) else process.returncode


async def wait_until_ready(
    base_url: str,
    process: Process | subprocess.Popen[bytes],
    *,
    within: float = READY_TIMEOUT_SECONDS,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Wait until the ``serve --http`` just launched as ``process`` answers ``{base_url}/readyz`` with 200: it
    listens, reaches its database and has the current schema. ``ServerNotReady`` (saying what it last
    answered) as soon as the process exits, or after ``within`` seconds. ``verify`` checks an HTTPS server's
    certificate (e.g. an ``ssl.SSLContext`` trusting a test's own CA)."""
    ready = base_url.rstrip("/") + "/readyz"
    last = "nothing yet"
    async with httpx2.AsyncClient(verify=verify, trust_env=False, timeout=httpx2.Timeout(5.0)) as http:
        try:
            with anyio.fail_after(within):
                while (code := _exit_code(process)) is None:
                    try:
                        response = await http.get(ready)
                    except httpx2.TransportError as exc:
                        last = f"{exc.__class__.__name__}: {exc}"
                    else:
                        if response.status_code == 200:
                            return
                        last = f"{response.status_code} {response.text[:300]}"
                    await anyio.sleep(READY_POLL_SECONDS)
        except TimeoutError:
            msg = f"{ready} did not answer 200 within {within:g} s; last answer: {last}"
            raise ServerNotReady(msg) from None
    msg = f"the HTTP server exited with {code} before {ready} answered 200; last answer: {last}"
    raise ServerNotReady(msg)
