"""Bearer auth over HTTP: JWTs verified with pyjwt, and the caller they name.

Claims (PRODUCT.md §8): ``sub`` = agent id, ``tenant`` = tenant id, ``roles`` = reader/writer/curator/admin,
optional ``channels``, plus ``iss``, ``aud`` and ``exp`` (required). This version verifies HS256 tokens from
``AGENT_MEMORY_JWT_SECRET``; JWKS (RS256/ES256 with key rotation) is planned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier

from agent_memory.caller import Caller
from agent_memory.errors import Forbidden
from agent_memory.settings import Settings
from agent_memory.vocabulary import CHANNELS

log = structlog.get_logger(__name__)

ROLES = ("reader", "writer", "curator", "admin")
CLOCK_SKEW_SECONDS = 30


class JwtVerifier(TokenVerifier):
    """Verifies HS256 bearer tokens; any failure is ``None`` (the SDK answers 401)."""

    def __init__(self, secret: str, *, issuer: str | None, audience: str | None) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer,
                audience=self._audience,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "sub", "tenant"]},
            )
        except jwt.PyJWTError as exc:
            log.info("bearer token refused", reason=str(exc))
            return None
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(role in ROLES for role in roles):
            log.info("bearer token refused", reason="roles claim is not a list of known roles")
            return None
        return AccessToken(
            token=token,
            client_id=str(claims["sub"]),
            scopes=[str(role) for role in roles],
            expires_at=int(claims["exp"]),
            subject=str(claims["sub"]),
            claims=claims,
        )


def token_identity(settings: Settings) -> Callable[[], Caller]:
    """The caller of the current HTTP request, from its verified token (or the local identity without auth)."""
    local = Caller(tenant=settings.tenant, agent_id=settings.agent, principal=f"local:{settings.agent}")

    def identify() -> Caller:
        token = get_access_token()
        if token is None:
            if settings.auth == "none":
                return local
            raise Forbidden("no verified bearer token on this request")
        claims = token.claims or {}
        channels = claims.get("channels") or list(CHANNELS)
        return Caller(
            tenant=str(claims["tenant"]),
            agent_id=str(claims["sub"]),
            roles=frozenset(token.scopes),
            channels=frozenset(str(c) for c in channels if c in CHANNELS),
            principal=f"jwt:{claims['sub']}",
        )

    return identify
