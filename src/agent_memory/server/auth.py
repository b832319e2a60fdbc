"""Bearer auth over HTTP through the SDK's ``TokenVerifier``, and the caller a verified token names.

A bearer token is a JWT (``AGENT_MEMORY_JWT_SECRET`` / ``AGENT_MEMORY_JWKS``), a tenant API key, or the bare
id of the key that signed the request (checked before, by ``server.signing``; see ``agent_memory.keys``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier

from agent_memory import keys
from agent_memory.caller import Caller
from agent_memory.errors import Forbidden
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from agent_memory.store.rows import ApiKeyRow
from agent_memory.tokens import TokenRejected, Verifier
from agent_memory.vocabulary import CHANNELS

log = structlog.get_logger(__name__)

# The key whose signature server.signing verified for the request being served (None: not a signed request).
signed_key: ContextVar[ApiKeyRow | None] = ContextVar("signed_key", default=None)


class BearerVerifier(TokenVerifier):
    """Any refused token is ``None`` (the SDK answers 401 with ``WWW-Authenticate``); a refusal never raises.
    A database that does not answer does raise (a 500, not a misleading 401)."""

    def __init__(self, verifier: Verifier, db: Database | None, refused: Callable[[str], None] | None = None) -> None:
        self._verifier = verifier
        self._db = db
        self._refused = refused or (lambda _kind: None)  # counts refusals by kind: "jwt", "api_key"

    async def verify_token(self, token: str) -> AccessToken | None:
        if keys.looks_like_key(token) and self._db is not None:
            return await self._key_token(token, self._db)
        try:
            claims = await self._verifier.claims(token)
        except TokenRejected as exc:
            log.info("bearer token refused", reason=str(exc))
            self._refused("jwt")
            return None
        return AccessToken(
            token=token,
            client_id=str(claims["sub"]),
            scopes=[str(role) for role in claims.get("roles", [])],
            expires_at=int(claims["exp"]),
            subject=str(claims["sub"]),
            claims=claims,
        )

    async def _key_token(self, token: str, db: Database) -> AccessToken | None:
        signed = signed_key.get()
        try:
            if signed is not None and token == signed.id:
                row = signed
            else:
                row = await keys.authenticate(db, token)
        except keys.KeyRejected as exc:
            log.info("API key refused", reason=str(exc))
            self._refused("api_key")
            return None
        claims = {
            "tenant": row.tenant_id,
            "sub": row.agent_id or row.name,
            "roles": row.roles,
            "fixed_agent": row.agent_id is not None,
        }
        return AccessToken(token=token, client_id=row.id, scopes=list(row.roles), subject=claims["sub"], claims=claims)


def verifier_from(
    settings: Settings, db: Database | None = None, refused: Callable[[str], None] | None = None
) -> BearerVerifier:
    """The verifier for the configured HS256 secret and/or JWKS, and the tenant API keys in ``db``; ``refused``
    is told the kind of each credential it refuses."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    jwt_verifier = Verifier(
        secret=secret, jwks=settings.jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    return BearerVerifier(jwt_verifier, db, refused)


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
        if keys.looks_like_key(token.token):  # never a JWT (those start "eyJ"): the claims are our own
            principal, fixed_agent = f"key:{token.client_id}", bool(claims["fixed_agent"])
        else:
            principal, fixed_agent = f"jwt:{claims['sub']}", True
        return Caller(
            tenant=str(claims["tenant"]),
            agent_id=str(claims["sub"]),
            roles=frozenset(token.scopes),
            channels=frozenset(claims.get("channels") or CHANNELS),
            principal=principal,
            fixed_agent=fixed_agent,
        )

    return identify
