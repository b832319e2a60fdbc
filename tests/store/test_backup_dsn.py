"""The database URL handed to pg_dump/pg_restore carries no password: it goes through PGPASSWORD, decoded."""

from __future__ import annotations

from agent_memory.store.backup import _dsn_and_password


def test_passwords_leave_the_command_line_decoded() -> None:
    url, env = _dsn_and_password("postgresql://app:p%40ss%3Aw@db:5432/memory?sslmode=verify-full")
    assert url == "postgresql://app@db:5432/memory?sslmode=verify-full"
    assert env == {"PGPASSWORD": "p@ss:w"}
    url, env = _dsn_and_password("postgresql://app@db/memory?password=s3cret&sslmode=require")
    assert url == "postgresql://app@db/memory?sslmode=require"
    assert env == {"PGPASSWORD": "s3cret"}
    assert _dsn_and_password("postgresql:///memory?host=/tmp") == ("postgresql:///memory?host=/tmp", {})
    url, env = _dsn_and_password("postgresql:///memory?host=/tmp&password=x")
    assert (url, env) == ("postgresql:///memory?host=/tmp", {"PGPASSWORD": "x"})
