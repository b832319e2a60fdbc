"""Logging: structlog configured once, always to stderr (stdout is the MCP protocol over stdio)."""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(
    fmt: str = "json", level: str = "info", reporter: structlog.types.Processor | None = None
) -> None:
    """Send structured logs to stderr as JSON (production) or readable lines (development).

    Request ids, tenant and principal are bound with ``structlog.contextvars`` and appear on every line.
    Standard-library loggers (uvicorn, asyncpg, the MCP SDK) go through the same renderer. ``reporter`` sees
    each structlog line before its exception is formatted (``error_reporting.structlog_processor``: error
    lines to Sentry); standard-library lines reach Sentry through its own logging integration instead.
    """
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, *([reporter] if reporter else []), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,  # a traceback as text, not the exc_info tuple's repr
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.getLogger("httpx2").setLevel(max(numeric, logging.WARNING))  # one line per request is noise
    root.setLevel(max(numeric, logging.INFO) if numeric > logging.DEBUG else numeric)
