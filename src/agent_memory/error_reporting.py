"""Error reporting to Sentry, when ``AGENT_MEMORY_SENTRY_DSN`` is set (the optional ``sentry`` extra).

``start`` runs once, at the start of ``serve`` (stdio and HTTP), before logging is configured. What reaches
Sentry: every log line at error level (structlog's through ``structlog_processor``, the standard library's —
uvicorn's "Exception in ASGI application", asyncpg's — through Sentry's logging integration) and every
exception that ends the process (``sys.excepthook``).

What never does: memory contents and secrets. Only the integrations listed in ``start`` run (no request
bodies, no database queries, no command line, no breadcrumbs); ``scrub_event`` then removes what could still
quote stored text or a credential: local variables, exception messages, log fields and arguments, request
data, headers and query strings. An event keeps its exception types, stack trace (code only), the log
line's constant message and, as tags, the ids ``tenant``, ``principal``, ``action`` and ``request_id``: the
request id finds the full log line in the operator's own logs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import Any, Final

import structlog

from agent_memory import __version__
from agent_memory.settings import Settings

ID_TAGS: Final = ("tenant", "principal", "action", "request_id")
REMOVED: Final = "[removed]"
INSTALL_HINT: Final = "uv sync --extra sentry, or pip install 'agent-memory[sentry]'"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def start(settings: Settings, *, transport: Any = None) -> structlog.types.Processor | None:
    """Initialise Sentry when a DSN is configured; returns the structlog processor that reports error lines
    (``None`` when there is no DSN). Raises ``ValueError`` naming the setting when sentry-sdk is not installed
    or the DSN is malformed. ``transport`` replaces the network (tests capture events in memory)."""
    if settings.sentry_dsn is None:
        return None
    try:
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.excepthook import ExcepthookIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.utils import BadDsn
    except ImportError as exc:
        msg = (
            "setting sentry_dsn (AGENT_MEMORY_SENTRY_DSN or --sentry-dsn) is set but sentry-sdk is not installed: "
            f"install the sentry extra ({INSTALL_HINT})"
        )
        raise ValueError(msg) from exc
    try:
        sentry_sdk.init(
            dsn=settings.sentry_dsn.get_secret_value(),
            environment=settings.sentry_environment,
            release=f"agent-memory@{__version__}",
            transport=transport,
            # no personal data: left unset, send_default_pii means False (setting it is deprecated from 2.75 on, in
            # favour of data_collection, which would also switch off Sentry's own scrubber of sensitive keys)
            include_local_variables=False,
            max_request_body_size="never",
            max_breadcrumbs=0,
            in_app_include=["agent_memory"],
            # only these: the defaults would add the command line (which may hold a database URL) and
            # auto-enabled ones would record request bodies, queries and their parameters
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[
                LoggingIntegration(level=None, event_level=logging.ERROR),
                ExcepthookIntegration(),
                DedupeIntegration(),
                AtexitIntegration(),
            ],
            before_send=_before_send,
        )
    except BadDsn as exc:  # its message names the part that is wrong, never the key
        raise ValueError(f"setting sentry_dsn: not a Sentry DSN ({exc})") from exc
    return structlog_processor


def structlog_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Report a structlog line at error level (or above) to Sentry, with its exception when it has one. Only
    its constant message and its id fields are sent; the line itself goes on to the renderer unchanged."""
    if event_dict.get("level") not in {"error", "critical"}:
        return event_dict
    import sentry_sdk
    from sentry_sdk.utils import capture_internal_exceptions, event_from_exception

    with capture_internal_exceptions():  # reporting must never break logging
        exc_info = _exc_info(event_dict.get("exc_info"))
        event: dict[str, Any] = {}
        hint: dict[str, Any] = {}
        if exc_info is not None:
            event, hint = event_from_exception(  # type: ignore[assignment]
                exc_info,
                client_options=sentry_sdk.get_client().options,
                mechanism={"type": "structlog", "handled": True},
            )
        event["level"] = event_dict["level"]
        event["logger"] = "agent_memory"
        event["logentry"] = {"message": str(event_dict.get("event", ""))}
        tags = {key: str(event_dict[key]) for key in ID_TAGS if event_dict.get(key) is not None}
        sentry_sdk.capture_event(event, hint=hint, tags=tags)  # type: ignore[arg-type]
    return event_dict


def scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event without anything that could hold memory contents or secrets (see the module's docstring).
    Changes ``event`` in place and returns it."""
    for key in ("extra", "breadcrumbs", "user", "modules"):
        event.pop(key, None)
    request = event.get("request")
    if isinstance(request, Mapping):
        kept = {"method": request.get("method"), "url": str(request.get("url", "")).split("?", 1)[0] or None}
        event["request"] = {key: value for key, value in kept.items() if value}
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        event["logentry"] = {"message": str(logentry.get("message", ""))}
    for exception in _values(event.get("exception")):
        if exception.get("value"):
            exception["value"] = REMOVED
        _scrub_frames(exception.get("stacktrace"))
    for thread in _values(event.get("threads")):
        _scrub_frames(thread.get("stacktrace"))
    tags = event.get("tags")
    if isinstance(tags, dict):
        event["tags"] = {key: value for key, value in tags.items() if key in ID_TAGS or key.startswith("sentry")}
    return event


def _before_send(event: Any, _hint: Any) -> Any:
    """Tag the event with the ids bound to the current request (``structlog.contextvars``), then scrub it."""
    bound = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    for key in ID_TAGS:
        if bound.get(key) is not None and key not in tags:
            tags[key] = str(bound[key])
    return scrub_event(event)


def _values(container: Any) -> list[dict[str, Any]]:
    """``container["values"]`` (Sentry's shape for exceptions and threads), or nothing."""
    values = container.get("values") if isinstance(container, Mapping) else None
    return [value for value in values if isinstance(value, dict)] if isinstance(values, list) else []


def _scrub_frames(stacktrace: Any) -> None:
    if isinstance(stacktrace, Mapping):
        for frame in stacktrace.get("frames") or []:
            if isinstance(frame, dict):
                frame.pop("vars", None)


def _exc_info(value: Any) -> ExcInfo | None:
    """structlog's ``exc_info`` (``True`` from ``log.exception``, an exception, or a tuple) as a tuple."""
    if value is True:
        value = sys.exc_info()
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[1] is not None:
        return value
    return None
