"""Whole-database backups with ``pg_dump``/``pg_restore``, for ``agent-memory backup`` and ``restore``.

The programs are those of the server's major version when this machine has them (``/usr/lib/postgresql/N/bin``,
``/usr/pgsql-N/bin``, or on the PATH), else the ones shipped with the embedded PostgreSQL (version 18: they
dump older servers too, but their restore may use settings an older server lacks).

A backup is PostgreSQL's custom format: every tenant, the audit trail and the migrations' bookkeeping, owners
left out (the restoring login owns what it restores). A restore replaces the objects it contains (``--clean
--if-exists``) in one transaction. For point-in-time recovery of a server, use its WAL archiving instead
(docs/deploy.md).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import anyio

from agent_memory.errors import InvalidInput, Unavailable
from agent_memory.store.database import Database
from agent_memory.store.embedded import client_program


def _dsn_and_password(dsn: str) -> tuple[str, dict[str, str]]:
    """The URL without its password (in the authority or the query), and the environment that passes it
    (``PGPASSWORD``, decoded): a password never reaches a command line, where every user could read it."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_query = [value for key, value in query if key == "password"]
    if parts.password is None and not in_query:
        return dsn, {}
    secret = in_query[-1] if in_query else unquote(parts.password or "")
    netloc = parts.netloc.replace(f":{parts.password}@", "@") if parts.password is not None else parts.netloc
    kept = urlencode([(key, value) for key, value in query if key != "password"], safe="/")
    url = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{kept}" if kept else "")
    return url, {"PGPASSWORD": secret}


async def _program(name: str, major: int) -> str:
    """``name`` of the server's major version if installed, else the embedded server's own."""
    candidates = [f"/usr/lib/postgresql/{major}/bin/{name}", f"/usr/pgsql-{major}/bin/{name}", shutil.which(name)]
    for candidate in candidates:
        if candidate and await anyio.Path(candidate).is_file():
            result = await anyio.run_process([candidate, "--version"], check=False)
            found = re.search(rb"\) (\d+)", result.stdout)
            if found and int(found[1]) == major:
                return candidate
    return str(client_program(name))


async def _run(db: Database, name: str, *args: str) -> None:
    async with db.pool.acquire() as conn:
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
    url, secret = _dsn_and_password(db.dsn)
    command = [await _program(name, major), *args, f"--dbname={url}"]
    result = await anyio.run_process(command, env={**os.environ, **secret}, check=False)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise Unavailable(f"{name} failed (exit {result.returncode}): {detail}")


async def backup(db: Database, output: Path) -> int:
    """Dump the database of ``db`` into ``output``; returns its size in bytes."""
    await _run(db, "pg_dump", "--format=custom", "--no-owner", f"--file={output}")
    return (await anyio.Path(output).stat()).st_size


async def restore(db: Database, source: Path) -> None:
    """Restore a backup made by ``backup`` into the database of ``db``, replacing what it holds."""
    if not await anyio.Path(source).is_file():
        raise InvalidInput("FILE", f"{str(source)!r} is not a file", "a file made by agent-memory backup")
    restore_args = ("--clean", "--if-exists", "--no-owner", "--single-transaction")
    absolute = await anyio.Path(source).resolve()  # never read as an option, whatever its name
    await _run(db, "pg_restore", *restore_args, str(absolute))
