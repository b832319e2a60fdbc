"""The account that runs the PostgreSQL binaries, and the directories made for it."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent_memory.store.embedded._install import _Install
from agent_memory.store.embedded._shared import SERVICE_USER, EmbeddedPostgresError

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Account:
    """The account that runs the PostgreSQL binaries: ourselves, or the service user when we are root."""

    uid: int
    gid: int
    name: str
    switch: bool  # whether subprocesses change to this account

    def run(
        self, argv: Sequence[str | Path], *, timeout: float, new_session: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a binary as this account: no stdin, output captured (our stdout may be the MCP protocol)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        args = [str(arg) for arg in argv]
        try:
            return subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                env=env,
                cwd="/",
                check=False,
                start_new_session=new_session,
                user=self.uid if self.switch else None,
                group=self.gid if self.switch else None,
                extra_groups=[] if self.switch else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(f"{shlex.join(args)} did not finish within {timeout:g} s") from exc
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot run {args[0]} as {self.name!r}: {exc}") from exc

    def can_run(self, install: _Install) -> bool:
        """Whether this account can actually execute the binaries (and load their libraries)."""
        for name in ("postgres", "psql"):
            try:
                if self.run([install.exe(name), "--version"], timeout=30).returncode != 0:
                    return False
            except EmbeddedPostgresError:
                return False
        return True

    def owns(self, path: Path) -> None:
        """Give a path this module just created to the account."""
        if self.switch:
            os.chown(path, self.uid, self.gid)


def _current_account() -> _Account:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return _Account(uid=uid, gid=os.getegid(), name=name, switch=False)


def _service_account() -> _Account:
    """The system user ``agent-memory``, created (no home, no login shell) if it does not exist."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER]
        _log.info("embedded_postgres.creating_service_user", user=SERVICE_USER)
        try:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
            )
            problem = result.stderr.strip() or f"exit status {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = str(exc)
        try:
            entry = pwd.getpwnam(SERVICE_USER)  # created now, or by a concurrent process
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root, so it runs as the system user {SERVICE_USER!r}, "
                f"which does not exist and could not be created ({shlex.join(argv)}: {problem}); "
                "create that user, or run agent-memory as a non-root user"
            ) from None
    return _Account(uid=entry.pw_uid, gid=entry.pw_gid, name=SERVICE_USER, switch=True)


def _check_reachable(path: Path, account: _Account) -> None:
    """Fail unless every existing directory from / down to ``path`` lets ``account`` traverse it.

    Decided from owner, group and mode bits (ACLs are not consulted).
    """
    groups = set(os.getgrouplist(account.name, account.gid))
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return  # this one and those below it will be created by us
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as the system user {account.name!r} because this process is root, but "
                f"{directory} (mode {stat.S_IMODE(info.st_mode):o}, owner uid {info.st_uid}) does not let "
                f"that user through, so it cannot reach the data directory {path}. agent-memory does not "
                "loosen permissions of directories it did not create: choose a data directory that user "
                "can reach, such as /var/lib/agent-memory, by setting AGENT_MEMORY_DATA_DIR"
            )


def _make_parents(path: Path, account: _Account) -> None:
    """Create the missing parents of ``path``; as root with mode 0755 whatever the umask, so that the
    service user can get through them."""
    for parent in reversed(path.parents):
        try:
            parent.mkdir(mode=0o755)
        except FileExistsError:
            continue
        if account.switch:
            parent.chmod(0o755)


def _make_dir(path: Path, account: _Account, mode: int = 0o700) -> bool:
    """Create ``path`` (and its parents) and give it to ``account``; False if it existed."""
    _make_parents(path, account)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return False
    path.chmod(mode)  # mkdir applies the umask
    account.owns(path)
    return True
