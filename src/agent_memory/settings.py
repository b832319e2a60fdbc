"""Settings: one object, built once at start from the environment (``AGENT_MEMORY_*``) and CLI flags.

Every secret may also be given as ``AGENT_MEMORY_<NAME>_FILE`` pointing at a mounted file. The table of
settings lives in ``docs/configuration.md``; a test fails when a field here is missing from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_FIELDS = ("database_url", "jwt_secret", "redis_url", "sentry_dsn")  # each also as AGENT_MEMORY_<NAME>_FILE
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    """Operator-facing configuration (PRODUCT.md §8)."""

    model_config = SettingsConfigDict(env_prefix="AGENT_MEMORY_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None, description="External PostgreSQL URL; unset means the embedded PostgreSQL."
    )
    data_dir: Path | None = Field(
        default=None, description="Where the embedded PostgreSQL lives (default: XDG data home/agent-memory)."
    )
    tenant: str = Field(
        default="local", min_length=1, max_length=64, description="Tenant of a stdio server and of the admin commands."
    )
    agent: str = Field(
        default="local-agent", min_length=1, max_length=128, description="Agent id of stdio calls that name none."
    )
    http_host: str = Field(default="127.0.0.1", description="HTTP bind address.")
    http_port: int = Field(default=8765, ge=0, le=65535, description="HTTP bind port.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host headers accepted over HTTP (default: loopback names)."
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 key that verifies bearer tokens (at least 32 bytes)."
    )
    jwks: str | None = Field(
        default=None,
        description="Path or URL of a JWKS: RS256/ES256 tokens are checked with the key their `kid` names.",
    )
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim of bearer tokens, when set.")
    jwt_audience: str | None = Field(default=None, description="Required `aud` claim of bearer tokens, when set.")
    auth: Literal["required", "none"] = Field(
        default="required", description="HTTP auth: `required`, or `none` (loopback only)."
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS.")
    tls_key: Path | None = Field(default=None, description="PEM private key of the certificate.")
    tls_min_version: Literal["1.2", "1.3"] = Field(default="1.2", description="Oldest TLS version accepted.")
    signature_window: float = Field(
        default=300, ge=1, le=3600, description="Seconds a signed request's timestamp may differ from the clock."
    )
    audit_retention_days: int = Field(
        default=365, ge=0, description="Days `agent-memory audit purge` keeps audit rows (0: forever)."
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis for rate limits shared by every replica; unset: limits per process."
    )
    rate_limit_tenant: float = Field(default=500, ge=0, description="Calls a second per tenant (0: no limit).")
    rate_limit_tenant_burst: float = Field(default=1000, ge=1, description="Burst size per tenant.")
    rate_limit_agent: float = Field(default=100, ge=0, description="Calls a second per agent (0: no limit).")
    rate_limit_agent_burst: float = Field(default=200, ge=1, description="Burst size per agent.")
    slow_query_ms: float = Field(
        default=200, gt=0, description="Queries slower than this are logged with their name and counted."
    )
    pool_min: int = Field(default=1, ge=0, le=100, description="Connections the pool keeps open.")
    pool_max: int = Field(default=20, ge=1, le=500, description="Most connections the pool opens.")
    log_format: Literal["json", "console"] = Field(
        default="json", description="Log format on stderr: JSON lines, or readable lines."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    max_request_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest HTTP request body accepted, in bytes (larger: 413).",
    )
    batch_max: int = Field(default=500, ge=1, le=5000, description="Most events one `remember` call takes.")
    text_max_chars: int = Field(default=1_000_000, ge=1000, description="Longest event text accepted (characters).")
    artifact_threshold_chars: int = Field(
        default=4000,
        ge=200,
        description="Tool output longer than this is stored whole as an artifact; the event keeps an excerpt.",
    )
    chunk_tokens: int = Field(
        default=400, ge=50, le=4000, description="Target size of a retrieval chunk, in estimated tokens."
    )
    embeddings: bool = Field(
        default=True, description="Semantic retrieval: embed chunks in the background and use the vectors in recall."
    )
    embedding_batch: int = Field(default=32, ge=1, le=512, description="Chunks the background embedder embeds at once.")
    embedding_threads: int = Field(
        default=1, ge=1, le=64, description="CPU threads the embedding model may use, per call."
    )
    embedding_queue: int = Field(
        default=1000, ge=1, le=100_000, description="Tenants with new chunks the embedder keeps waiting at most."
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        description="Report errors of `serve` to this Sentry DSN (needs the `sentry` extra); unset: no reporting.",
    )
    sentry_environment: str | None = Field(
        default=None, max_length=64, description="Environment Sentry files the events under, e.g. `production`."
    )

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """Fill ``X`` from the file named by ``AGENT_MEMORY_X_FILE`` when ``X`` itself is not given."""
        if not isinstance(data, dict):
            return data
        for name in SECRET_FIELDS:
            path = os.environ.get(f"AGENT_MEMORY_{name.upper()}_FILE")
            if path and data.get(name) is None and not os.environ.get(f"AGENT_MEMORY_{name.upper()}"):
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    msg = f"AGENT_MEMORY_{name.upper()}_FILE: cannot read {path!r} ({exc.strerror})"
                    raise ValueError(msg) from exc
        return data

    @field_validator("tenant")
    @classmethod
    def _tenant_shape(cls, value: str) -> str:
        if not all(ch.isalnum() or ch in "-_." for ch in value):
            msg = f"tenant {value!r} may contain only letters, digits, '-', '_' and '.'"
            raise ValueError(msg)
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode("utf-8")) < MIN_SECRET_BYTES:
            msg = f"must be at least {MIN_SECRET_BYTES} bytes (HS256 needs a key as long as its hash)"
            raise ValueError(msg)
        return value

    @field_validator("sentry_dsn", "sentry_environment", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty value (an empty key of a mounted secret) means unset: no error reporting."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
