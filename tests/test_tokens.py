"""Bearer tokens: what is accepted, what is refused, keys that rotate, and `agent-memory token mint`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent_memory.tokens import TokenRejected, Verifier, mint

pytestmark = pytest.mark.anyio
SECRET = "a-development-secret-of-at-least-32-bytes"


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "agent-a", "tenant": "acme", "roles": ["writer"], "exp": int(time.time()) + 300, **extra}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_minted_token_verifies_with_its_claims() -> None:
    """`mint` makes an HS256 token that the verifier accepts, claims intact."""
    token = mint(SECRET, tenant="acme", agent="agent-a", roles=["reader", "writer"], channels=["team"])
    verified = await Verifier(secret=SECRET, jwks=None, issuer=None, audience=None).claims(token)
    assert (verified["tenant"], verified["sub"], verified["roles"], verified["channels"]) == (
        "acme",
        "agent-a",
        ["reader", "writer"],
        ["team"],
    )


def _unsigned(payload: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def _tampered() -> str:
    header, _, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    return f"{header}.{_b64(json.dumps(claims(tenant='globex')).encode())}.{signature}"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256"), "expired"),
        (lambda: jwt.encode(claims(), "another-secret-that-is-also-32-bytes-long", algorithm="HS256"), "Signature"),
        (lambda: _unsigned(claims()), "algorithm 'none'"),
        (_tampered, "Signature"),
        (lambda: jwt.encode({k: v for k, v in claims().items() if k != "tenant"}, SECRET, algorithm="HS256"), "tenant"),
        (lambda: jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256"), "exp"),
        (lambda: jwt.encode(claims(roles=["root"]), SECRET, algorithm="HS256"), "roles"),
        (lambda: jwt.encode(claims(channels=["everywhere"]), SECRET, algorithm="HS256"), "channels"),
        (lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS384"), "HS384"),
        (lambda: "not-a-token", "malformed"),
    ],
    ids=[
        "expired",
        "wrong-key",
        "alg-none",
        "tampered",
        "no-tenant",
        "no-exp",
        "bad-role",
        "bad-channel",
        "hs384",
        "garbage",
    ],
)
async def test_bad_tokens_are_refused_with_a_reason(token: Callable[[], str], reason: str) -> None:
    """Each kind of bad token is refused, and the (logged) reason says which. Tokens are made when the test
    runs, not when it is collected: a long run would otherwise see them all expire."""
    with pytest.raises(TokenRejected, match=reason):
        await Verifier(secret=SECRET, jwks=None, issuer=None, audience=None).claims(token())


async def test_issuer_and_audience_are_required_when_configured() -> None:
    """With an issuer and audience configured, a token must carry both, matching."""
    verifier = Verifier(secret=SECRET, jwks=None, issuer="https://idp.example", audience="agent-memory")
    good = jwt.encode(claims(iss="https://idp.example", aud="agent-memory"), SECRET, algorithm="HS256")
    assert (await verifier.claims(good))["sub"] == "agent-a"
    for wrong in (
        claims(iss="https://evil.example", aud="agent-memory"),
        claims(iss="https://idp.example", aud="x"),
        claims(),
    ):
        with pytest.raises(TokenRejected):
            await verifier.claims(jwt.encode(wrong, SECRET, algorithm="HS256"))


async def test_clock_skew_is_tolerated_up_to_thirty_seconds() -> None:
    """A token expired 10 s ago still passes; one expired 2 minutes ago does not."""
    verifier = Verifier(secret=SECRET, jwks=None, issuer=None, audience=None)
    await verifier.claims(jwt.encode(claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256"))
    with pytest.raises(TokenRejected):
        await verifier.claims(jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256"))


def _jwk(private: Any, kid: str) -> dict[str, Any]:
    public = json.loads(
        jwt.algorithms.get_default_algorithms()["RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"].to_jwk(
            private.public_key()
        )
    )
    return {**public, "kid": kid}


async def test_jwks_keys_verify_rs256_and_es256_and_rotate(tmp_path: Path) -> None:
    """RS256 and ES256 tokens verify with the JWKS key named by their kid; a key added to the file starts
    working and a key removed from it stops working, without a restart."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(rsa_key, "k1"), _jwk(ec_key, "k2")]}), encoding="utf-8")
    verifier = Verifier(secret=None, jwks=str(jwks), issuer=None, audience=None)
    rs = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    es = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "k2"})
    rotated = jwt.encode(claims(), new_key, algorithm="RS256", headers={"kid": "k3"})
    assert (await verifier.claims(rs))["tenant"] == "acme"
    assert (await verifier.claims(es))["tenant"] == "acme"
    with pytest.raises(TokenRejected, match="k3"):
        await verifier.claims(rotated)
    with pytest.raises(TokenRejected, match="not accepted"):
        await verifier.claims(jwt.encode(claims(), SECRET, algorithm="HS256"))
    jwks.write_text(json.dumps({"keys": [_jwk(ec_key, "k2"), _jwk(new_key, "k3")]}), encoding="utf-8")
    os.utime(jwks, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert (await verifier.claims(rotated))["tenant"] == "acme"
    with pytest.raises(TokenRejected, match="k1"):
        await verifier.claims(rs)
    forged = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k3"})
    with pytest.raises(TokenRejected, match="Signature"):
        await verifier.claims(forged)


def test_token_mint_command() -> None:
    """`agent-memory token mint` prints a token the server's verifier accepts; without a secret it refuses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    command = [
        sys.executable,
        "-m",
        "agent_memory",
        "token",
        "mint",
        "--tenant",
        "acme",
        "--agent",
        "ci",
        "--role",
        "admin",
    ]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert refused.returncode == 2
    assert "AGENT_MEMORY_JWT_SECRET" in refused.stderr
    env["AGENT_MEMORY_JWT_SECRET"] = SECRET
    minted = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=True)
    decoded = jwt.decode(minted.stdout.strip(), SECRET, algorithms=["HS256"])
    assert (decoded["tenant"], decoded["sub"], decoded["roles"]) == ("acme", "ci", ["admin"])
