"""``agent-memory``: serve, migrate, inspect and curate the memory from the command line.

Every flag has an ``AGENT_MEMORY_*`` environment twin (docs/configuration.md); a flag wins over the variable.
``serve`` over stdio writes nothing to stdout except the protocol; logs go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from agent_memory import __version__
from agent_memory.access import ROLES
from agent_memory.errors import AgentMemoryError
from agent_memory.logs import configure_logging
from agent_memory.settings import Settings
from agent_memory.vocabulary import CHANNELS, VIEW_NAMES

EPILOG = """environment: AGENT_MEMORY_DATABASE_URL (unset: embedded PostgreSQL in AGENT_MEMORY_DATA_DIR),
AGENT_MEMORY_TENANT, AGENT_MEMORY_HTTP_HOST/PORT, AGENT_MEMORY_AUTH, AGENT_MEMORY_JWT_SECRET,
AGENT_MEMORY_LOG_FORMAT/LEVEL ... see docs/configuration.md"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand with its own ``--help``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="external PostgreSQL URL (default: the embedded PostgreSQL)")
    common.add_argument("--data-dir", type=Path, help="where the embedded PostgreSQL lives")
    common.add_argument("--tenant", help="tenant to act for (default: local)")
    common.add_argument("--log-format", choices=["json", "console"], help="log format on stderr")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")

    parser = argparse.ArgumentParser(
        prog="agent-memory",
        description="Durable, curated memory for LLM agents, served over MCP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agent-memory {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the MCP server (stdio by default)",
        description="Run the MCP server: over stdio for a desktop assistant, or with --http as a "
        "streamable HTTP endpoint at /mcp with /healthz and /readyz.",
    )
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    serve.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP bind port (default 8765)")
    serve.add_argument("--auth", choices=["required", "none"], help="HTTP bearer auth (none: loopback only)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument("--tls-min-version", choices=["1.2", "1.3"], help="oldest TLS version (default 1.2)")

    commands.add_parser(
        "migrate",
        parents=[common],
        help="apply pending schema migrations",
        description="Apply every pending schema migration (the server also does this at start).",
    )
    commands.add_parser(
        "doctor",
        parents=[common],
        help="show where the data lives and what is running",
        description="Report the database in use, where its data lives, the schema version and what is running.",
    )

    reindex = commands.add_parser(
        "reindex",
        parents=[common],
        help="rebuild chunks and caches from events",
        description="Drop and rebuild everything derived from events (chunks, caches), in bounded batches, "
        "with a progress bar on stderr: the tenant of --tenant, or every tenant with --all-tenants.",
    )
    reindex.add_argument("--all-tenants", action="store_true", help="every tenant (default: only --tenant)")
    reindex.add_argument("--batch", type=int, default=1000, help="events per transaction (default 1000)")

    replay = commands.add_parser(
        "replay",
        parents=[common],
        help="replay scenario transcripts through a real MCP client",
        description="Replay transcripts (JSON files, or folders of them) through the real MCP client: over "
        "stdio it launches `agent-memory serve` per tenant; over HTTP it launches `serve --http`, or talks to "
        "--url. Prints a line per scenario and `N passed, N failed`; exits 1 on any failure.",
    )
    replay.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="transcript files or folders")
    replay.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default stdio")
    replay.add_argument("--url", help="a running server's MCP endpoint (implies http)")
    replay.add_argument("--token", help="bearer token for --url (one tenant)")
    replay.add_argument("--jwt-secret", help="HS256 secret to mint a token per scenario tenant for --url")
    replay.add_argument("--report", type=Path, help="write a JSON report here")

    token = commands.add_parser(
        "token", help="mint bearer tokens for development and tests", description="Bearer tokens."
    )
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    mint = token_commands.add_parser(
        "mint",
        parents=[common],
        help="print an HS256 token signed with AGENT_MEMORY_JWT_SECRET",
        description="Print a bearer token for --agent of --tenant with the given roles, signed with the "
        "configured HS256 secret (AGENT_MEMORY_JWT_SECRET or _FILE), with the configured issuer and audience.",
    )
    mint.add_argument("--agent", required=True, help="the token's subject: the agent id")
    mint.add_argument("--role", action="append", required=True, choices=ROLES, help="repeat for several roles")
    mint.add_argument("--channel", action="append", choices=CHANNELS, help="limit the channels (repeatable)")
    mint.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")

    views = commands.add_parser(
        "views", help="read or write the curated views", description="Read or write a view of a tenant."
    )
    view_commands = views.add_subparsers(dest="views_command", required=True, metavar="ACTION")
    view_set = view_commands.add_parser(
        "set", parents=[common], help="replace a view from a file", description="Replace view NAME with FILE."
    )
    view_set.add_argument("name", choices=VIEW_NAMES, metavar="NAME", help=f"one of {', '.join(VIEW_NAMES)}")
    view_set.add_argument("file", metavar="FILE", help="a text or Markdown file, or - for stdin")
    view_show = view_commands.add_parser("show", parents=[common], help="print a view", description="Print view NAME.")
    view_show.add_argument("name", choices=VIEW_NAMES, metavar="NAME", help=f"one of {', '.join(VIEW_NAMES)}")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags that were given."""
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("database_url", "database_url"),
        ("data_dir", "data_dir"),
        ("tenant", "tenant"),
        ("log_format", "log_format"),
        ("log_level", "log_level"),
        ("host", "http_host"),
        ("port", "http_port"),
        ("auth", "auth"),
        ("tls_cert", "tls_cert"),
        ("tls_key", "tls_key"),
        ("tls_min_version", "tls_min_version"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agent-memory`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"agent-memory: setting {field}: {error['msg']}", file=sys.stderr)
        return 2
    is_server = args.command == "serve"
    # a replay prints its own report: the servers' and the database's chatter only when asked for
    quiet = args.command == "replay" and getattr(args, "log_level", None) is None
    configure_logging(settings.log_format if is_server else "console", "warning" if quiet else settings.log_level)
    try:
        return anyio.run(_dispatch, args, settings)
    except AgentMemoryError as exc:
        print(f"agent-memory: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    # Imported late: `--help` and the admin commands do not pay for loading the MCP SDK.
    if args.command == "serve":
        return await _serve(args, settings)
    if args.command == "replay":
        from agent_memory.replay import replay

        return await replay(
            args.paths,
            settings,
            transport="http" if args.url else args.transport,
            url=args.url,
            token=args.token,
            jwt_secret=args.jwt_secret,
            report_file=args.report,
        )
    if args.command == "token":
        return _mint(args, settings)
    from agent_memory.server import commands

    handlers = {
        "migrate": lambda: commands.migrate(settings),
        "doctor": lambda: commands.doctor_command(settings),
        "reindex": lambda: commands.reindex_command(settings, all_tenants=args.all_tenants, batch=args.batch),
        "views": lambda: (
            commands.set_view_command(settings, args.name, args.file)
            if args.views_command == "set"
            else commands.show_view_command(settings, args.name)
        ),
    }
    return await handlers[args.command]()


def _mint(args: argparse.Namespace, settings: Settings) -> int:
    from agent_memory.tokens import mint

    if settings.jwt_secret is None:
        print("agent-memory: token mint needs AGENT_MEMORY_JWT_SECRET (or _FILE)", file=sys.stderr)
        return 2
    print(
        mint(
            settings.jwt_secret.get_secret_value(),
            tenant=settings.tenant,
            agent=args.agent,
            roles=args.role,
            ttl=args.ttl,
            channels=args.channel,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.http:
        from agent_memory.server.http import serve_http

        await serve_http(settings)
    else:
        from agent_memory.server.stdio import serve_stdio

        await serve_stdio(settings)
    return 0
