"""Shared fixtures: a real PostgreSQL, a fresh database per test cloned from a migrated template, and MCP
clients over the in-memory transport.

The PostgreSQL is the embedded one (started once per test run in a temporary data directory) unless
``AGENT_MEMORY_TEST_DATABASE_URL`` names a server to use instead (its user must be allowed to create
databases). Each test gets its own database, so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from mcp import Client

from agent_memory.runtime import Runtime, local_identity
from agent_memory.server.app import build_server
from agent_memory.settings import Settings
from agent_memory.store.database import Database
from agent_memory.store.embedded import EmbeddedPostgres
from agent_memory.store.migrate import migrate

TEST_DATABASE_ENV = "AGENT_MEMORY_TEST_DATABASE_URL"
_counter = itertools.count()


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built in tests come from the test, never from the developer's AGENT_MEMORY_* variables."""
    for name in list(os.environ):
        if name.startswith("AGENT_MEMORY_") and name != TEST_DATABASE_ENV:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """Admin DSN of the PostgreSQL server the tests use."""
    external = os.environ.get(TEST_DATABASE_ENV)
    if external:
        yield external
        return
    data_dir = Path(tempfile.mkdtemp(prefix="am-test-", dir="/tmp"))
    data_dir.chmod(0o755)  # ours: the unprivileged PostgreSQL account must reach it when we run as root
    embedded = EmbeddedPostgres(data_dir)
    try:
        embedded.acquire()
        yield embedded.dsn("postgres")
    finally:
        embedded.release()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(server_dsn: str) -> Iterator[str]:
    """A database migrated once per run; every test's database is cloned from it."""
    name = f"am_template_{os.getpid()}"
    anyio.run(_admin, server_dsn, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    anyio.run(_migrate, with_database(server_dsn, name))
    yield name
    anyio.run(_admin, server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(server_dsn: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"am_test_{os.getpid()}_{next(_counter)}"
    anyio.run(_admin, server_dsn, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield with_database(server_dsn, name)
    anyio.run(_admin, server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    """A database with nothing in it (not migrated), for tests of the migrations themselves."""
    name = f"am_empty_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(server_dsn, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, tenant="local", agent="agent-a")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(database_url, max_size=10, run_migrations=False)
    try:
        yield database
    finally:
        await database.close()


def make_client(db: Database, settings: Settings) -> Client:
    """An in-memory MCP client of a server over ``db`` acting for ``settings.tenant``."""
    runtime = Runtime(db=db, settings=settings, identify=local_identity(settings))
    return Client(build_server(runtime, tenant_filter=settings.tenant), raise_exceptions=True)


@pytest.fixture
async def client(db: Database, settings: Settings) -> AsyncIterator[Client]:
    """An MCP client (in-memory transport) of a server for tenant ``local``."""
    async with make_client(db, settings) as connected:
        yield connected
