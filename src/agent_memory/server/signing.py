"""Signed requests over HTTP: check the HMAC of a request that carries one before the MCP app sees it.

A request with ``X-Agent-Memory-Signature`` or ``X-Agent-Memory-Timestamp`` names its API key's id as its
bearer token; its body is read (up to the request size limit), the signature checked (``keys.verify_signed``)
and the key handed to the bearer check through ``auth.signed_key``. A refusal is a 401 that says why. Requests
without those headers pass through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_memory import keys
from agent_memory.errors import AgentMemoryError
from agent_memory.server.auth import signed_key
from agent_memory.store.database import Database

log = structlog.get_logger(__name__)


class SignedRequests:
    """ASGI middleware in front of the MCP app; see the module docstring."""

    def __init__(
        self, app: ASGIApp, db: Database, *, window: float, max_body: int, refused: Callable[[], None] = lambda: None
    ) -> None:
        self._app = app
        self._db = db
        self._window = window
        self._max_body = max_body
        self._refused = refused  # told of each request refused for its signature

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        timestamp, signature = headers.get(keys.TIMESTAMP_HEADER), headers.get(keys.SIGNATURE_HEADER)
        if timestamp is None and signature is None:
            await self._app(scope, receive, send)
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not keys.looks_like_key(token) or "." in token:
            self._refused()
            await _refuse(
                send, 401, "invalid_token", "a signed request sends its API key's id (key_...) as its bearer token"
            )
            return
        body = await _read_body(receive, self._max_body)
        if body is None:
            await _refuse(send, 413, "request_too_large", f"the body exceeds {self._max_body} bytes")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        raw = scope.get("raw_path")  # as the client sent and signed it (percent-encoding kept)
        path = (raw.decode("latin-1") if raw else scope["path"]) + (f"?{query}" if query else "")
        try:
            row = await keys.verify_signed(
                self._db,
                token,
                method=scope["method"],
                path=path,
                timestamp=timestamp,
                signature=signature,
                body=body,
                window=self._window,
            )
        except keys.KeyRejected as exc:
            log.info("signed request refused", reason=str(exc), key_id=token)
            self._refused()
            await _refuse(send, 401, "invalid_token", str(exc))
            return
        except AgentMemoryError as exc:
            await _refuse(send, 503, exc.code, exc.message)
            return
        bound = signed_key.set(row)
        try:
            await self._app(scope, _replay(body, receive), send)
        finally:
            signed_key.reset(bound)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is longer than ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the body already read, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, status: int, error: str, description: str) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode("utf-8")
    quoted = description.encode("ascii", "replace").decode("ascii").replace("\\", "/").replace('"', "'")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    if status == 401:
        headers.append((b"www-authenticate", f'Bearer error="{error}", error_description="{quoted}"'.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
