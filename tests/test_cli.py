"""The `agent-memory` command line: help for every command, migrate, doctor and the views."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_memory.cli import build_parser, main, settings_from
from tests.helpers import run_cli

EXECUTABLE = str(Path(sys.executable).parent / "agent-memory")
COMMANDS = [
    [],
    ["serve"],
    ["migrate"],
    ["doctor"],
    ["reindex"],
    ["replay"],
    ["token"],
    ["token", "mint"],
    ["views"],
    ["views", "set"],
    ["views", "show"],
    ["forget"],
    ["export"],
    ["import"],
    ["backup"],
    ["restore"],
    ["retention"],
    ["retention", "set"],
    ["retention", "purge"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["audit"],
    ["audit", "export"],
    ["audit", "purge"],
    ["reference"],
]


def run(*args: str, database_url: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(database_url, *args, stdin=stdin)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` works on every command and says what it does."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "usage: agent-memory" in out
    if command == ["serve"]:
        assert "--http" in out


def test_migrate_and_doctor_report_the_schema(database_url: str) -> None:
    """`migrate` has nothing pending on a migrated database; `doctor` reports it healthy."""
    migrated = run("migrate", database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "none pending" in migrated.stdout
    doctor = run("doctor", database_url=database_url)
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["ok"] is True
    assert report["schema_version"] == report["expected_schema_version"]
    assert report["database"]["kind"] == "external"
    assert report["search_indexed"] is True  # the tests migrate as a superuser


def test_doctor_hides_the_database_password() -> None:
    """The URL doctor prints never shows a password, even when the database is unreachable."""
    result = run("doctor", database_url="postgresql://app:hunter2hunter2@127.0.0.1:1/nothing")
    assert result.returncode == 1
    assert "hunter2hunter2" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is False


def test_views_set_then_show(database_url: str, tmp_path: Path) -> None:
    """`views set rules FILE` stores the file; `views show rules` prints it back; stdin works too."""
    rules = tmp_path / "rules.md"
    rules.write_text("# Rules\n1. Cite the events you rely on.\n", encoding="utf-8")
    stored = run("views", "set", "rules", str(rules), database_url=database_url)
    assert stored.returncode == 0, stored.stderr
    assert "version 1" in stored.stdout
    shown = run("views", "show", "rules", database_url=database_url)
    assert shown.stdout == rules.read_text(encoding="utf-8")
    again = run("views", "set", "rules", "-", database_url=database_url, stdin="Be brief.\n")
    assert "version 2" in again.stdout
    assert run("views", "show", "rules", database_url=database_url).stdout == "Be brief.\n"


def test_unknown_view_and_unwritten_view(database_url: str) -> None:
    """An unknown view name is refused by the parser; an unwritten view says so and exits 1."""
    unknown = run("views", "show", "secrets", database_url=database_url)
    assert unknown.returncode == 2
    assert "identity" in unknown.stderr
    missing = run("views", "show", "glossary", database_url=database_url)
    assert missing.returncode == 1
    assert "has not been written" in missing.stderr


def test_bad_settings_name_the_setting() -> None:
    """A malformed setting is reported by name before anything starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env["AGENT_MEMORY_POOL_MAX"] = "lots"
    result = subprocess.run([EXECUTABLE, "migrate"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2
    assert "pool_max" in result.stderr


def test_serve_flags_set_what_their_environment_twins_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every security, scaling and error-reporting setting has a `serve` flag; the JWT secret comes from a file only."""
    secret_file = tmp_path / "jwt"
    secret_file.write_text("s" * 40 + "\n", encoding="utf-8")
    args = build_parser().parse_args(
        [
            "serve",
            "--http",
            "--allowed-hosts",
            "mem.example.com, mem.internal:8765",
            "--jwt-secret-file",
            str(secret_file),
            "--jwks",
            "https://id.example.com/jwks.json",
            "--jwt-issuer",
            "https://id.example.com",
            "--jwt-audience",
            "agent-memory",
            "--redis-url",
            "redis://cache:6379/0",
            "--pool-max",
            "40",
            "--sentry-dsn",
            "https://publickey@sentry.example.com/7",
            "--sentry-environment",
            "staging",
        ]
    )
    settings = settings_from(args)
    assert settings.allowed_hosts == ["mem.example.com", "mem.internal:8765"]
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "s" * 40
    assert (settings.jwks, settings.jwt_issuer, settings.jwt_audience) == (
        "https://id.example.com/jwks.json",
        "https://id.example.com",
        "agent-memory",
    )
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://cache:6379/0"
    assert settings.pool_max == 40
    assert settings.sentry_dsn is not None
    assert settings.sentry_dsn.get_secret_value() == "https://publickey@sentry.example.com/7"
    assert settings.sentry_environment == "staging"
    assert main(["serve", "--jwt-secret-file", str(tmp_path / "missing")]) == 2
    assert "--jwt-secret-file" in capsys.readouterr().err
    assert main(["serve", "--pool-max", "0"]) == 2
    assert "pool_max" in capsys.readouterr().err
