"""Bearer tokens: minting HS256 tokens for development and tests, and verifying any accepted token.

Claims (PRODUCT.md §8): ``sub`` = agent id, ``tenant`` = tenant id, ``roles`` = reader/writer/curator/admin,
optional ``channels``, plus ``exp`` (required), and ``iss`` / ``aud`` (required when configured).
HS256 tokens are checked with the shared secret; RS256 and ES256 tokens with the JWKS key named by their
``kid``, so keys rotate by publishing the new key before signing with it. ``alg: none`` and every other
algorithm are refused; clock skew up to 30 s is tolerated.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

import anyio
import httpx2
import jwt

from agent_memory.access import ROLES
from agent_memory.errors import InvalidInput
from agent_memory.vocabulary import CHANNELS

CLOCK_SKEW_SECONDS: Final = 30
_TENANT: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
ASYMMETRIC: Final = ("RS256", "ES256")
JWKS_REFRESH_SECONDS: Final = 60  # an unknown kid refetches a JWKS URL at most this often
JWKS_MAX_AGE_SECONDS: Final = 600


class TokenRejected(Exception):
    """Why a token was refused (logged, never shown to the caller beyond a 401)."""


def mint(
    secret: str,
    *,
    tenant: str,
    agent: str,
    roles: list[str],
    ttl: int = 3600,
    channels: list[str] | None = None,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for ``agent`` of ``tenant`` with ``roles``, valid ``ttl`` seconds."""
    for role in roles:
        if role not in ROLES:
            raise InvalidInput("role", f"{role!r} is not a role", ", ".join(ROLES))
    for channel in channels or []:
        if channel not in CHANNELS:
            raise InvalidInput("channels", f"{channel!r} is not a channel", ", ".join(CHANNELS))
    if ttl <= 0:
        raise InvalidInput("ttl", f"{ttl} seconds", "a positive number of seconds")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": agent, "tenant": tenant, "roles": roles, "iat": now, "exp": now + ttl}
    if channels:
        claims["channels"] = channels
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


class KeySet:
    """A JWKS from a file or URL. A file is reread whenever it changes; a URL is refetched when a token names
    a key id it does not hold (at most once a minute) and every ten minutes, so a removed key stops working."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._is_url = source.startswith(("https://", "http://"))
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._version: int | None = None

    async def key(self, kid: str) -> jwt.PyJWK:
        await self._refresh(kid)
        if kid not in self._keys:
            msg = f"no key with kid {kid!r} in the JWKS"
            raise TokenRejected(msg)
        return self._keys[kid]

    async def _refresh(self, kid: str) -> None:
        if not self._is_url:
            version = (await anyio.Path(self._source).stat()).st_mtime_ns
            if version != self._version:
                document = json.loads(await anyio.Path(self._source).read_text(encoding="utf-8"))
                self._use(document)
                self._version = version
            return
        age = None if self._loaded_at is None else time.monotonic() - self._loaded_at
        if age is None or age >= JWKS_MAX_AGE_SECONDS or (kid not in self._keys and age >= JWKS_REFRESH_SECONDS):
            self._loaded_at = time.monotonic()
            async with httpx2.AsyncClient(timeout=5.0) as http:
                response = await http.get(self._source)
                response.raise_for_status()
                self._use(response.json())

    def _use(self, document: dict[str, Any]) -> None:
        self._keys = {entry["kid"]: jwt.PyJWK(entry) for entry in document.get("keys", []) if "kid" in entry}


class Verifier:
    """Checks a bearer token's signature, algorithm, expiry, issuer, audience and claim shapes."""

    def __init__(self, *, secret: str | None, jwks: str | None, issuer: str | None, audience: str | None) -> None:
        self._secret = secret
        self._keys = KeySet(jwks) if jwks else None
        self._issuer = issuer
        self._audience = audience

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims, or ``TokenRejected`` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"malformed token: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm == "HS256" and self._secret is not None:
            key: Any = self._secret
        elif algorithm in ASYMMETRIC and self._keys is not None:
            try:
                key = (await self._keys.key(str(header.get("kid")))).key
            except (OSError, ValueError, httpx2.HTTPError, jwt.PyJWTError) as exc:
                raise TokenRejected(f"cannot load the JWKS: {exc}") from exc
        else:
            raise TokenRejected(f"algorithm {algorithm!r} is not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "sub", "tenant"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(str(exc)) from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(role in ROLES for role in roles):
            raise TokenRejected("roles must be a list of reader, writer, curator, admin")
        channels = claims.get("channels")
        if channels is not None and (not isinstance(channels, list) or not set(channels) <= set(CHANNELS)):
            raise TokenRejected("channels must be a list of private, team, agent, public")
        if not isinstance(claims["tenant"], str) or not _TENANT.fullmatch(claims["tenant"]):
            raise TokenRejected("tenant must be 1 to 64 letters, digits, '-', '_' or '.'")
        return claims
