"""Error reporting to Sentry: off without a DSN, a clear start-up error without the `sentry` extra, and events
that carry ids and code but never memory contents or secrets (captured in memory: no network)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
import structlog
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from agent_memory import error_reporting
from agent_memory.error_reporting import REMOVED, scrub_event
from agent_memory.logs import configure_logging
from agent_memory.settings import Settings

DSN = "https://publickey@sentry.example.invalid/42"
CONTENT = "the launch code is 0000 and Ada's phone is +44 20 7946 0958"


class Captured(Transport):
    """A transport that keeps the events it is given."""

    events: list[dict[str, Any]]

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Sentry initialised by `error_reporting.start` with an in-memory transport; closed afterwards, and
    logging put back as it was (the test configures it onto a captured stderr that is closed after it)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    transport = Captured()
    reporter = error_reporting.start(Settings(sentry_dsn=DSN, sentry_environment="test"), transport=transport)
    assert reporter is error_reporting.structlog_processor
    try:
        yield transport
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_without_a_dsn_nothing_is_reported() -> None:
    """No DSN: `start` does nothing and gives no processor (sentry-sdk is not even needed)."""
    assert error_reporting.start(Settings()) is None


def test_the_dsn_may_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like every secret, the DSN may be a mounted file named by AGENT_MEMORY_SENTRY_DSN_FILE."""
    secret = tmp_path / "sentry_dsn"
    secret.write_text(DSN + "\n", encoding="utf-8")
    monkeypatch.setenv("AGENT_MEMORY_SENTRY_DSN_FILE", str(secret))
    dsn = Settings().sentry_dsn
    assert dsn is not None
    assert dsn.get_secret_value() == DSN


def test_an_empty_dsn_file_turns_reporting_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty key of the mounted secret (the Kubernetes template's default) means no error reporting."""
    secret = tmp_path / "sentry_dsn"
    secret.write_text("\n", encoding="utf-8")
    monkeypatch.setenv("AGENT_MEMORY_SENTRY_DSN_FILE", str(secret))
    settings = Settings()
    assert settings.sentry_dsn is None
    assert error_reporting.start(settings) is None


def test_a_malformed_dsn_names_the_setting_not_the_key() -> None:
    """A DSN Sentry cannot parse stops the start with the setting's name; the key in it is not repeated."""
    with pytest.raises(ValueError, match="sentry_dsn") as raised:
        error_reporting.start(Settings(sentry_dsn="ftp://verysecretkey@sentry.example.invalid/1"))
    assert "verysecretkey" not in str(raised.value)


@pytest.mark.slow
def test_serve_without_the_extra_refuses_to_start_and_says_how_to_install_it() -> None:
    """With a DSN but no sentry-sdk, `serve` exits 2 before touching the database, naming the setting and the
    install commands; stdout (the protocol over stdio) stays empty."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MEMORY_")}
    env["AGENT_MEMORY_SENTRY_DSN"] = DSN
    env["AGENT_MEMORY_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/nothing"  # never reached
    # sentry-sdk is a dev dependency: hide it as an install without the extra would lack it
    program = (
        "import sys; sys.modules['sentry_sdk'] = None\n"
        "from agent_memory.cli import main\n"
        "raise SystemExit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "sentry_dsn" in result.stderr
    assert "uv sync --extra sentry" in result.stderr
    assert "pip install 'agent-memory[sentry]'" in result.stderr
    assert "127.0.0.1:1" not in result.stderr  # it stopped before any connection attempt


def test_scrub_event_keeps_ids_and_code_and_drops_contents() -> None:
    """From an event as Sentry's integrations build it, the scrubber removes every place stored text or a
    secret could hide — local variables, exception messages, log arguments, request data and headers, extras,
    breadcrumbs, the user — and keeps exception types, stack frames, the log template and the id tags."""
    frame = {"filename": "agent_memory/ingest.py", "function": "remember", "lineno": 7, "vars": {"text": CONTENT}}
    event: dict[str, Any] = {
        "level": "error",
        "logger": "uvicorn.error",
        "logentry": {"message": "Exception in %s", "params": [CONTENT], "formatted": f"Exception in {CONTENT}"},
        "exception": {
            "values": [
                {"type": "UniqueViolationError", "value": f"Key (text)=({CONTENT})", "stacktrace": {"frames": [frame]}}
            ]
        },
        "threads": {"values": [{"stacktrace": {"frames": [dict(frame)]}}]},
        "request": {
            "method": "POST",
            "url": "https://memory.example.com/mcp?token=abc",
            "data": {"text": CONTENT},
            "headers": {"Authorization": "Bearer abc"},
            "query_string": "token=abc",
            "cookies": {"session": "abc"},
        },
        "extra": {"sys.argv": ["agent-memory", "--database-url", "postgresql://app:hunter2@db/x"]},
        "breadcrumbs": {"values": [{"message": CONTENT}]},
        "user": {"ip_address": "203.0.113.9"},
        "tags": {"tenant": "acme", "principal": "jwt:bot-1", "request_id": "r1", "text": CONTENT},
    }
    scrubbed = json.dumps(scrub_event(event))
    for leaked in (CONTENT, "hunter2", "abc", "203.0.113.9"):
        assert leaked not in scrubbed
    assert event["exception"]["values"][0]["type"] == "UniqueViolationError"
    assert event["exception"]["values"][0]["value"] == REMOVED
    assert event["exception"]["values"][0]["stacktrace"]["frames"][0]["function"] == "remember"
    assert event["logentry"] == {"message": "Exception in %s"}
    assert event["request"] == {"method": "POST", "url": "https://memory.example.com/mcp"}
    assert event["tags"] == {"tenant": "acme", "principal": "jwt:bot-1", "request_id": "r1"}


def test_errors_reach_sentry_tagged_with_ids_and_without_contents(
    captured: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error logged with structlog (with and without an exception), one logged by a standard-library logger
    (as uvicorn logs a crashed request) and a crash that ends the process each become one Sentry event, tagged
    with the tenant, principal, action and request id; none carries the memory contents involved; stdout stays
    clean; lines below error level are not reported."""
    configure_logging("json", "info", error_reporting.structlog_processor)  # as `serve` does, onto captured stderr
    log = structlog.get_logger("agent_memory.test")
    with structlog.contextvars.bound_contextvars(tenant="acme", principal="jwt:bot-1", request_id="r1"):
        log.warning("only a warning", text=CONTENT)
        log.error("the database refused a query", error=CONTENT)
        secret_local = CONTENT
        try:
            raise RuntimeError(f"failed on {secret_local}")
        except RuntimeError:
            log.exception("call failed unexpectedly", action="remember")
        try:
            raise ValueError(secret_local)
        except ValueError:  # another exception: Sentry reports each exception once
            logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=True)
    try:
        raise KeyError(CONTENT)
    except KeyError:
        sys.excepthook(*sys.exc_info())
    sentry_sdk.flush()

    events = captured.events
    assert [event.get("logentry", {}).get("message") for event in events] == [
        "the database refused a query",
        "call failed unexpectedly",
        "Exception in ASGI application\n",
        None,
    ]
    for event in events[:3]:
        assert {key: event["tags"][key] for key in ("tenant", "principal", "request_id")} == {
            "tenant": "acme",
            "principal": "jwt:bot-1",
            "request_id": "r1",
        }
        assert event["environment"] == "test"
        assert event["release"].startswith("agent-memory@")
    assert events[1]["tags"]["action"] == "remember"
    assert events[1]["exception"]["values"][-1]["type"] == "RuntimeError"
    assert events[2]["exception"]["values"][-1]["type"] == "ValueError"
    assert events[3]["exception"]["values"][-1]["type"] == "KeyError"
    assert CONTENT not in json.dumps(events, default=str)
    assert all("vars" not in frame for frame in _frames(events))
    out = capsys.readouterr()
    assert out.out == ""
    assert "the database refused a query" in out.err  # the log line itself still has everything, locally


def _frames(events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for event in events:
        for exception in event.get("exception", {}).get("values", []):
            yield from exception.get("stacktrace", {}).get("frames", [])
