"""Streamable HTTP: our Starlette app with ``/healthz``, ``/readyz`` and the MCP endpoint at ``/mcp``.

Stateless, so that any replica can serve any request; bearer auth (JWTs, tenant API keys, signed requests)
unless ``AGENT_MEMORY_AUTH=none`` on a loopback bind.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
import uvicorn
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from agent_memory.errors import AgentMemoryError, InvalidInput
from agent_memory.metrics import Metrics
from agent_memory.ratelimit import rate_limiter
from agent_memory.runtime import Runtime
from agent_memory.server.app import build_server
from agent_memory.server.auth import token_identity, verifier_from
from agent_memory.server.signing import SignedRequests
from agent_memory.server.stdio import run_until_signal
from agent_memory.settings import Settings
from agent_memory.store.database import Database

log = structlog.get_logger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
GRACE_SECONDS = 10  # how long calls in flight may take to finish after SIGTERM


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or name."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_options(settings: Settings, db: Database | None = None, metrics: Metrics | None = None) -> dict[str, Any]:
    """The MCPServer arguments for the configured auth, or a clear error for an unsafe configuration.
    Bearer tokens are JWTs (when a secret or JWKS is configured) and the tenant API keys kept in ``db``."""
    if settings.auth == "none":
        if not is_loopback(settings.http_host):
            raise InvalidInput(
                "AGENT_MEMORY_AUTH",
                f"'none' while binding {settings.http_host}",
                "'none' only on a loopback address; configure AGENT_MEMORY_JWT_SECRET to serve a network",
            )
        return {}
    if settings.jwt_secret is None and settings.jwks is None:
        log.warning(
            "no AGENT_MEMORY_JWT_SECRET or AGENT_MEMORY_JWKS: only tenant API keys (agent-memory keys create) "
            "are accepted"
        )
    base = f"http://{settings.http_host}:{settings.http_port}"
    return {
        "token_verifier": verifier_from(
            settings, db, None if metrics is None else lambda kind: metrics.auth_failures.labels(kind=kind).inc()
        ),
        "auth": AuthSettings(
            issuer_url=settings.jwt_issuer or base,
            resource_server_url=f"{base}/mcp",
            validate_token_resource=False,  # the verifier checks `aud` itself (AGENT_MEMORY_JWT_AUDIENCE)
        ),
    }


def create_app(db: Database, settings: Settings) -> Starlette:
    """A fresh ASGI app (the MCP session manager can run once per instance: one app per server)."""
    runtime = Runtime(db=db, settings=settings, identify=token_identity(settings), limiter=rate_limiter(settings))
    db.slow_queries.listeners.append(lambda name, _seconds: runtime.metrics.slow_queries.labels(query=name).inc())
    server = build_server(runtime, background_embedder=True, **auth_options(settings, db, runtime.metrics))
    hosts = settings.allowed_hosts or [f"{name}:*" for name in LOOPBACK_NAMES] + list(LOOPBACK_NAMES)
    mcp_app = server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        max_request_body_size=settings.max_request_bytes,
        host=settings.http_host,
        # browsers send the page's Origin: accept only the allowed hosts' own origins (DNS-rebinding guard)
        transport_security=TransportSecuritySettings(
            allowed_hosts=hosts,
            allowed_origins=[f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")],
        ),
    )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metrics(_: Request) -> Response:
        try:
            with anyio.fail_after(2):
                await db.ping()
            runtime.metrics.database_up.set(1)
        except (AgentMemoryError, TimeoutError):
            runtime.metrics.database_up.set(0)
        size, idle = db.pool.get_size(), db.pool.get_idle_size()
        runtime.metrics.pool_connections.labels(state="in_use").set(size - idle)
        runtime.metrics.pool_connections.labels(state="idle").set(idle)
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def readyz(_: Request) -> JSONResponse:
        try:
            await db.ping()
            applied, expected = await db.schema_status()
        except AgentMemoryError as exc:
            return JSONResponse({"status": "unavailable", "reason": exc.message}, status_code=503)
        current = max(applied, default=0)
        if current != expected:
            reason = f"schema version {current}, expected {expected}"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready", "schema_version": current})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            async with server.session_manager.run():
                yield
        finally:
            if runtime.limiter is not None:
                await runtime.limiter.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Mount(
                "/",
                app=SignedRequests(
                    mcp_app,
                    db,
                    window=settings.signature_window,
                    max_body=settings.max_request_bytes,
                    refused=lambda: runtime.metrics.auth_failures.labels(kind="signature").inc(),
                ),
            ),
        ],
        lifespan=lifespan,
    )


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS arguments: the certificate and key, and no protocol older than the configured minimum."""
    if settings.tls_cert is None and settings.tls_key is None:
        return {}
    if settings.tls_cert is None or settings.tls_key is None:
        missing = "AGENT_MEMORY_TLS_CERT" if settings.tls_cert is None else "AGENT_MEMORY_TLS_KEY"
        raise InvalidInput(missing, "not set while the other half of the pair is", "both a certificate and its key")
    minimum = ssl.TLSVersion.TLSv1_3 if settings.tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2

    def context(_: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        made = default()
        made.minimum_version = minimum
        return made

    return {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_keyfile": str(settings.tls_key),
        "ssl_context_factory": context,
    }


async def serve_http(settings: Settings) -> None:
    """Serve streamable HTTP on the configured host and port until SIGTERM or SIGINT."""
    auth_options(settings)  # refuse an unsafe configuration before touching the database
    tls_options(settings)

    async def run(db: Database, stopping: anyio.Event) -> None:
        config = uvicorn.Config(
            create_app(db, settings),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=GRACE_SECONDS,
            **tls_options(settings),
        )
        server = uvicorn.Server(config)
        log.info("serving streamable HTTP", host=settings.http_host, port=settings.http_port, auth=settings.auth)
        async with anyio.create_task_group() as group:

            async def stop() -> None:
                await stopping.wait()
                # uvicorn stops accepting connections, lets calls in flight finish (up to GRACE_SECONDS, then
                # cancels them) and runs the app's shutdown; only then does serve() return and the pool close
                server.should_exit = True

            group.start_soon(stop)
            await server.serve()
            group.cancel_scope.cancel()

    await run_until_signal(settings, run)
