"""HTTPS: uvicorn serves TLS from --tls-cert/--tls-key, never older than TLS 1.2 (1.3-only on request)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent_memory.replay.targets import free_port, wait_until_ready


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent-memory test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def https_server(database_url: str, certificate: tuple[Path, Path], request: pytest.FixtureRequest) -> Iterator[int]:
    """`agent-memory serve --http` with TLS on a free loopback port; the minimum version from the test's param."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env.update(AGENT_MEMORY_DATABASE_URL=database_url, AGENT_MEMORY_AUTH="none")
    command = [sys.executable, "-m", "agent_memory", "serve", "--http", "--port", str(port)]
    command += ["--tls-cert", str(certificate[0]), "--tls-key", str(certificate[1])]
    command += ["--tls-min-version", request.param]
    with subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        trusting = ssl.create_default_context(cafile=str(certificate[0]))
        anyio.run(partial(wait_until_ready, f"https://127.0.0.1:{port}", process, verify=trusting))
        yield port
        process.terminate()
        process.wait(timeout=20)


def _get(port: int, context: ssl.SSLContext) -> tuple[bytes, str | None]:
    """The whole response to GET /healthz over TLS, and the TLS version negotiated."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(4096):
            response += chunk
        return response, tls.version()


@pytest.mark.parametrize("https_server", ["1.2"], indirect=True)
def test_https_serves_with_the_given_certificate(https_server: int, certificate: tuple[Path, Path]) -> None:
    """A client trusting the certificate gets /healthz over TLS 1.2 or newer."""
    response, version = _get(https_server, ssl.create_default_context(cafile=str(certificate[0])))
    assert response.endswith(b'{"status":"ok"}')
    assert version in {"TLSv1.2", "TLSv1.3"}


@pytest.mark.parametrize("https_server", ["1.3"], indirect=True)
def test_tls_13_only_refuses_a_tls_12_client(https_server: int, certificate: tuple[Path, Path]) -> None:
    """With --tls-min-version 1.3 a client that speaks at most TLS 1.2 cannot connect; a 1.3 client can."""
    old = ssl.create_default_context(cafile=str(certificate[0]))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _get(https_server, old)
    response, version = _get(https_server, ssl.create_default_context(cafile=str(certificate[0])))
    assert response.endswith(b'{"status":"ok"}')
    assert version == "TLSv1.3"
