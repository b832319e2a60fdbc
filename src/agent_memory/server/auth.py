"""Bearer auth over HTTP through the SDK's ``TokenVerifier``, and the caller a verified token names."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier

from agent_memory.caller import Caller
from agent_memory.errors import Forbidden
from agent_memory.settings import Settings
from agent_memory.tokens import TokenRejected, Verifier
from agent_memory.vocabulary import CHANNELS

log = structlog.get_logger(__name__)


class JwtVerifier(TokenVerifier):
    """Any refused token is ``None`` (the SDK answers 401 with ``WWW-Authenticate``); nothing raises."""

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = await self._verifier.claims(token)
        except TokenRejected as exc:
            log.info("bearer token refused", reason=str(exc))
            return None
        return AccessToken(
            token=token,
            client_id=str(claims["sub"]),
            scopes=[str(role) for role in claims.get("roles", [])],
            expires_at=int(claims["exp"]),
            subject=str(claims["sub"]),
            claims=claims,
        )


def verifier_from(settings: Settings) -> JwtVerifier:
    """The verifier for the configured HS256 secret and/or JWKS."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    return JwtVerifier(
        Verifier(secret=secret, jwks=settings.jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
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
        return Caller(
            tenant=str(claims["tenant"]),
            agent_id=str(claims["sub"]),
            roles=frozenset(token.scopes),
            channels=frozenset(claims.get("channels") or CHANNELS),
            principal=f"jwt:{claims['sub']}",
            fixed_agent=True,
        )

    return identify
