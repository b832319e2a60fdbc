"""Tenant API keys for service clients, and the signed requests a key may require.

A key reads ``key_<ULID>.<secret>``: its id, then 256 random bits. It is shown once, when created; the
database keeps its id and the SHA-256 of the whole key, never the key. It is sent as a bearer token
(``Authorization: Bearer key_….…``) and checked against the database on every request, so a revocation holds
on every replica at once.

A client that opts in signs its requests instead (a key created with ``require_signature`` must): it sends
only the key id as its bearer token, and

- ``X-Agent-Memory-Timestamp``: the request's time, in whole seconds since the Unix epoch;
- ``X-Agent-Memory-Signature``: ``v1=`` and the hex HMAC-SHA256 of ``METHOD\\nPATH\\nTIMESTAMP\\nSHA256(BODY)``
  (the path with its query string, the body's digest in hex), keyed with the hex SHA-256 of the key.

A signature is good once, within the replay window (``AGENT_MEMORY_SIGNATURE_WINDOW`` seconds either side of
the server's clock): a stale timestamp, a wrong signature or a signature seen before is refused. The key
itself never travels; the HMAC key is what the database stores, so whoever can read ``api_keys`` could sign
(they could read the memories too: protect the database).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx2

from agent_memory.access import ROLES
from agent_memory.errors import InvalidInput, NotFound
from agent_memory.ids import new_id
from agent_memory.store.database import Database
from agent_memory.store.rows import ApiKeyRow

KEY_ID = re.compile(r"^key_[0-9A-HJKMNP-TV-Z]{26}$")
TIMESTAMP_HEADER = "x-agent-memory-timestamp"
SIGNATURE_HEADER = "x-agent-memory-signature"
SIGNATURE_VERSION = "v1"
MAX_TIMESTAMP_DIGITS = 12


class KeyRejected(Exception):
    """A key, or a signed request, that does not authenticate; the message says why (for the log and the
    401's description: it never contains the key)."""


@dataclass(frozen=True)
class NewKey:
    """A key just created: ``key`` is shown this once and stored nowhere."""

    key: str
    row: ApiKeyRow


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is one of our API keys (or a signed request's key id) rather than a JWT."""
    return token.startswith("key_")


def digest(key: str) -> str:
    """What the database keeps of a key: the hex SHA-256 of all of it (also the HMAC key of its signatures)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split(token: str) -> tuple[str, str | None]:
    """``(key id, secret)`` of a bearer key, or ``(key id, None)`` for a signed request's bare key id."""
    key_id, dot, secret = token.partition(".")
    if not KEY_ID.match(key_id) or (dot and not secret):
        msg = "malformed API key"
        raise KeyRejected(msg)
    return key_id, secret or None


async def create(
    db: Database, tenant: str, *, role: str, name: str, agent_id: str | None = None, require_signature: bool = False
) -> NewKey:
    """A new key of ``tenant`` with ``role`` (acting as ``agent_id`` only, when given)."""
    if role not in ROLES:
        raise InvalidInput("role", f"{role!r} is not a role", f"one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 200:
        raise InvalidInput("name", "empty or longer than 200 characters", "1-200 characters")
    if agent_id is not None and not 0 < len(agent_id.strip()) <= 128:
        raise InvalidInput("agent", "empty or longer than 128 characters", "an agent id of 1-128 characters")
    key_id = new_id("api_key")
    key = f"{key_id}.{secrets.token_urlsafe(32)}"
    async with db.transaction(tenant) as tx:
        await tx.ensure_tenant()
        row = await tx.insert_api_key(key_id, name, digest(key), [role], agent_id, signed=require_signature)
    return NewKey(key=key, row=row)


async def list_keys(db: Database, tenant: str) -> list[ApiKeyRow]:
    """Every key of ``tenant``, revoked ones included, oldest first."""
    async with db.transaction(tenant) as tx:
        return await tx.list_api_keys()


async def revoke(db: Database, tenant: str, key_id: str) -> ApiKeyRow:
    """Revoke a key of ``tenant``: from now on every replica refuses it."""
    async with db.transaction(tenant) as tx:
        row = await tx.revoke_api_key(key_id)
    if row is None:
        raise NotFound("API key", key_id, field="key_id")
    return row


async def _usable(db: Database, key_id: str) -> ApiKeyRow:
    row = await db.api_key(key_id)
    if row is None:
        msg = "unknown API key"
        raise KeyRejected(msg)
    if row.revoked_at is not None:
        msg = f"API key {key_id} was revoked"
        raise KeyRejected(msg)
    return row


async def authenticate(db: Database, token: str) -> ApiKeyRow:
    """The key a bearer token presents; ``KeyRejected`` when it is unknown, wrong, revoked, or must sign."""
    key_id, secret = split(token)
    if secret is None:
        msg = "a bare key id authenticates only a signed request"
        raise KeyRejected(msg)
    row = await _usable(db, key_id)
    if not hmac.compare_digest(row.key_hash, digest(token)):
        msg = "wrong API key"
        raise KeyRejected(msg)
    if row.require_signature:
        msg = f"API key {key_id} requires signed requests"
        raise KeyRejected(msg)
    return row


def sign(key: str, method: str, path: str, timestamp: int, body: bytes) -> str:
    """The ``X-Agent-Memory-Signature`` value of a request (what a client computes; the server checks it)."""
    return _signature(digest(key), method, path, timestamp, body)


def _signature(hmac_key: str, method: str, path: str, timestamp: int, body: bytes) -> str:
    canonical = f"{method.upper()}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    mac = hmac.new(hmac_key.encode("ascii"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


class SignedRequestAuth(httpx2.Auth):
    """For Python clients: sign every request with ``key`` (pass as ``auth=`` to an httpx2 client, e.g. the
    one an MCP ``streamable_http_client`` uses). The key never leaves the client; only its id does."""

    requires_request_body = True

    def __init__(self, key: str) -> None:
        self._key = key
        self._key_id, _ = split(key)

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        timestamp = int(time.time())
        path = request.url.raw_path.decode("ascii")
        request.headers["Authorization"] = f"Bearer {self._key_id}"
        request.headers[TIMESTAMP_HEADER] = str(timestamp)
        request.headers[SIGNATURE_HEADER] = sign(self._key, request.method, path, timestamp, request.content)
        yield request


async def verify_signed(
    db: Database,
    key_id: str,
    *,
    method: str,
    path: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    window: float,
) -> ApiKeyRow:
    """The key that signed this request; ``KeyRejected`` saying what is wrong with it otherwise."""
    if timestamp is None or signature is None:
        missing = TIMESTAMP_HEADER if timestamp is None else SIGNATURE_HEADER
        msg = f"signed request without {missing}"
        raise KeyRejected(msg)
    try:
        if len(timestamp) > MAX_TIMESTAMP_DIGITS:  # a number that long is no time (and would overflow a float)
            raise ValueError
        sent_at = int(timestamp)
    except ValueError:
        msg = f"{TIMESTAMP_HEADER} must be whole seconds since the Unix epoch, not {timestamp[:40]!r}"
        raise KeyRejected(msg) from None
    skew = time.time() - sent_at
    if abs(skew) > window:
        msg = f"stale signature: the timestamp is {abs(skew):.0f} s from the server's clock (window {window:.0f} s)"
        raise KeyRejected(msg)
    row = await _usable(db, key_id)
    expected = _signature(row.key_hash, method, path, sent_at, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("latin-1", "replace")):
        msg = "bad signature"
        raise KeyRejected(msg)
    async with db.transaction(row.tenant_id) as tx:
        timely, fresh = await tx.remember_signature(signature, sent_at, window)
    if not timely:  # the replica's clock let it pass, the database's (which keeps the signatures seen) does not
        msg = f"stale signature: the timestamp is more than {window:.0f} s from the database's clock"
        raise KeyRejected(msg)
    if not fresh:
        msg = "replayed request: this signature was used before"
        raise KeyRejected(msg)
    return row
