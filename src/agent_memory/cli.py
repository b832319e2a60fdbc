"""``agent-memory``: serve, migrate, inspect and curate the memory from the command line.

Every flag has an ``AGENT_MEMORY_*`` environment twin (docs/configuration.md); a flag wins over the variable.
``serve`` over stdio writes nothing to stdout except the protocol; logs go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio
from pydantic import ValidationError

from agent_memory import __version__, error_reporting
from agent_memory.access import ROLES
from agent_memory.errors import AgentMemoryError
from agent_memory.logs import configure_logging
from agent_memory.settings import Settings
from agent_memory.vocabulary import CHANNELS, VIEW_NAMES

EPILOG = """environment: AGENT_MEMORY_DATABASE_URL (unset: embedded PostgreSQL in AGENT_MEMORY_DATA_DIR),
AGENT_MEMORY_TENANT, AGENT_MEMORY_HTTP_HOST/PORT, AGENT_MEMORY_AUTH, AGENT_MEMORY_JWT_SECRET,
AGENT_MEMORY_LOG_FORMAT/LEVEL ... see docs/configuration.md"""

# the flags that set a setting: (argparse dest, setting); --jwt-secret-file is read by settings_from itself
SETTING_FLAGS: Final = (
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
    ("allowed_hosts", "allowed_hosts"),
    ("jwks", "jwks"),
    ("jwt_issuer", "jwt_issuer"),
    ("jwt_audience", "jwt_audience"),
    ("redis_url", "redis_url"),
    ("pool_max", "pool_max"),
    ("sentry_dsn", "sentry_dsn"),
    ("sentry_environment", "sentry_environment"),
)


def common_options() -> argparse.ArgumentParser:
    """The options every command that touches the database takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="external PostgreSQL URL (default: the embedded PostgreSQL)")
    common.add_argument("--data-dir", type=Path, help="where the embedded PostgreSQL lives")
    common.add_argument("--tenant", help="tenant to act for (default: local)")
    common.add_argument("--log-format", choices=["json", "console"], help="log format on stderr")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand with its own ``--help``."""
    common = common_options()

    parser = argparse.ArgumentParser(
        prog="agent-memory",
        description="Durable, curated memory for LLM agents, served over MCP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agent-memory {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_serve(commands, common)

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
        description="Print a JSON report: the database in use (kind, URL with the password hidden), the data "
        "directory, the embedded server's state, the schema version and pgvector. Exits 1 when something is wrong.",
    )

    reindex = commands.add_parser(
        "reindex",
        parents=[common],
        help="rebuild chunks and caches from events",
        description="Drop and rebuild everything derived from events (chunks, caches), in bounded batches, "
        "with a progress bar on stderr: the tenant of --tenant, or every tenant with --all-tenants. Every "
        "server's hot set is dropped. With --embeddings, instead embed every chunk that has no vector of the "
        "current model (a backfill: vectors of another model are made again).",
    )
    reindex.add_argument("--all-tenants", action="store_true", help="every tenant (default: only --tenant)")
    reindex.add_argument("--batch", type=int, default=1000, help="events per transaction (default 1000)")
    reindex.add_argument(
        "--embeddings",
        action="store_true",
        help="instead, embed every chunk that has no vector of the current model (a backfill; chunks stay)",
    )

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

    _add_keys(commands, common)
    _add_audit(commands, common)
    _add_forget(commands, common)
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write a tenant's data as JSON lines",
        description="Write everything recall is built from (events, artifacts, chunks with their vectors, "
        "decisions, tasks, handoffs, views) of --tenant as JSON lines, to stdout or to --output: a header line, "
        'then {"table", "row"} per row. Vectors are arrays of numbers: a database with pgvector or without it '
        "imports them.",
    )
    export.add_argument("--since", help="only what was recorded from then on (ISO 8601 date or time)")
    export.add_argument("--output", help="a file to write (default: stdout)")
    restore = commands.add_parser(
        "import",
        parents=[common],
        help="restore an export into an empty tenant",
        description="Restore a file made by `agent-memory export` into --tenant, which must hold no events "
        "yet (it may have another name than the exported one), in one transaction: all of it, or nothing. The "
        "same requests then give the same bundles.",
    )
    restore.add_argument("source", metavar="FILE", help="the export, or - for stdin")
    _add_backup(commands, common)
    _add_retention(commands, common)

    views = commands.add_parser(
        "views", help="read or write the curated views", description="Read or write a view of a tenant."
    )
    view_commands = views.add_subparsers(dest="views_command", required=True, metavar="ACTION")
    view_set = view_commands.add_parser(
        "set",
        parents=[common],
        help="replace a view from a file",
        description="Replace view NAME with FILE (- for stdin); secrets are redacted; listeners are notified.",
    )
    view_set.add_argument("name", choices=VIEW_NAMES, metavar="NAME", help=f"one of {', '.join(VIEW_NAMES)}")
    view_set.add_argument("file", metavar="FILE", help="a text or Markdown file, or - for stdin")
    view_show = view_commands.add_parser(
        "show", parents=[common], help="print a view", description="Print view NAME; exits 1 when it was never written."
    )
    view_show.add_argument("name", choices=VIEW_NAMES, metavar="NAME", help=f"one of {', '.join(VIEW_NAMES)}")

    reference = commands.add_parser(
        "reference",
        help="regenerate the generated sections of docs/reference.md",
        description="Rewrite the sections of docs/reference.md between `GENERATED` markers from the code: every "
        "tool and its arguments, resource, setting and command. Exits 1 when something has no description, or "
        "with --check when the file is not current.",
    )
    reference.add_argument("--check", action="store_true", help="change nothing; exit 1 when the file is not current")
    reference.add_argument(
        "--output", type=Path, default=Path("docs/reference.md"), help="the file (default docs/reference.md)"
    )
    return parser


def _add_serve(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the MCP server (stdio by default)",
        description="Run the MCP server: over stdio for a desktop assistant (stdout carries only the protocol; "
        "logs go to stderr), or with --http as a stateless streamable HTTP endpoint at /mcp, with /healthz "
        "(alive), /readyz (database reachable, schema current) and /metrics (Prometheus); over HTTP every request "
        "needs a bearer JWT or API key, or a signed request (docs/configuration.md). Stops cleanly on SIGTERM or "
        "SIGINT (and stops the embedded PostgreSQL when it was its last user).",
    )
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    serve.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP bind port (default 8765)")
    serve.add_argument("--auth", choices=["required", "none"], help="HTTP bearer auth (none: loopback only)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument("--tls-min-version", choices=["1.2", "1.3"], help="oldest TLS version (default 1.2)")
    serve.add_argument("--allowed-hosts", help="comma-separated Host headers accepted (default: loopback names)")
    serve.add_argument("--jwt-secret-file", type=Path, help="file holding the HS256 verification key")
    serve.add_argument("--jwks", help="path or URL of a JWKS for RS256/ES256 tokens")
    serve.add_argument("--jwt-issuer", help="required `iss` claim")
    serve.add_argument("--jwt-audience", help="required `aud` claim")
    serve.add_argument("--redis-url", help="Redis for rate limits shared by every replica")
    serve.add_argument("--pool-max", type=int, help="most pooled database connections (default 20)")
    serve.add_argument("--sentry-dsn", help="report errors to this Sentry DSN (needs the sentry extra)")
    serve.add_argument("--sentry-environment", help="environment of the Sentry events, e.g. production")


def _add_keys(commands: Any, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser(
        "keys",
        help="tenant API keys for service clients",
        description="Create, list and revoke a tenant's API keys. A key is printed once, when created; only "
        "its hash is stored. A revoked key is refused by every replica from the next request on.",
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser(
        "create",
        parents=[common],
        help="create a key and print it once",
        description="Create an API key of --tenant and print it once, alone on stdout (only its hash is stored).",
    )
    create.add_argument("--role", required=True, choices=ROLES, help="what the key may do")
    create.add_argument("--name", default="service", help="a label to recognise it by (default service)")
    create.add_argument("--agent", help="the one agent it acts as (default: any agent of the tenant)")
    create.add_argument(
        "--require-signature", action="store_true", help="refuse its bearer form: every request must be signed"
    )
    key_commands.add_parser(
        "list",
        parents=[common],
        help="list keys (never the keys)",
        description="List the keys of --tenant: id, name, role, agent, signed, created, last used, revoked; "
        "never the key itself.",
    )
    revoke = key_commands.add_parser(
        "revoke",
        parents=[common],
        help="revoke a key",
        description="Revoke a key of --tenant; every replica refuses it from the next request on.",
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_…)")


def _add_forget(commands: Any, common: argparse.ArgumentParser) -> None:
    forget = commands.add_parser(
        "forget",
        parents=[common],
        help="delete events, a session, a subject or a whole tenant, everywhere",
        description="Permanently delete from --tenant: events by id, a session, every event mentioning a "
        "subject (blanked out of the views too), or everything. Duplicates, chunks, artifacts, decisions and task "
        "state derived from them go too; the audit log keeps a tombstone with the counts. Prints the receipt as JSON.",
    )
    scope = forget.add_mutually_exclusive_group(required=True)
    scope.add_argument("--event", action="append", dest="event_ids", metavar="EVENT_ID", help="repeatable")
    scope.add_argument("--session", dest="session_id", help="a session id")
    scope.add_argument("--subject", help="text to forget wherever it appears (case-insensitive)")
    scope.add_argument("--everything", action="store_true", help="the whole tenant (needs --yes)")
    forget.add_argument("--yes", action="store_true", help="confirm --everything")


def _add_backup(commands: Any, common: argparse.ArgumentParser) -> None:
    dump = commands.add_parser(
        "backup",
        parents=[common],
        help="dump the whole database with pg_dump",
        description="Dump the whole database (the embedded one, or --database-url) into FILE in PostgreSQL's "
        "custom format, with the pg_dump of the server's major version when installed, else the embedded one's.",
    )
    dump.add_argument("output", metavar="FILE", help="where to write the backup")
    load = commands.add_parser(
        "restore",
        parents=[common],
        help="replace the database's contents with a backup",
        description="Restore a backup made by `agent-memory backup` with pg_restore, replacing the objects it "
        "holds, in one transaction; running servers drop their caches.",
    )
    load.add_argument("source", metavar="FILE", help="a backup file")
    load.add_argument("--yes", action="store_true", help="confirm: what the database holds now is replaced")


def _add_retention(commands: Any, common: argparse.ArgumentParser) -> None:
    retention = commands.add_parser(
        "retention",
        help="how long a tenant's events are kept, and the purge",
        description="Per-tenant retention: events older than it are forgotten by `retention purge` (run it "
        "daily), except pinned ones, those recording a decision still in force and the originals of duplicates "
        "recorded since.",
    )
    actions = retention.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    set_ = actions.add_parser(
        "set",
        parents=[common],
        help="set --tenant's retention",
        description="Set how long --tenant keeps its events (default: until forgotten).",
    )
    days = set_.add_mutually_exclusive_group(required=True)
    days.add_argument("--days", type=int, help="keep events this many days")
    days.add_argument("--forever", action="store_true", help="keep events until forgotten (the default)")
    actions.add_parser(
        "show", parents=[common], help="show --tenant's retention", description="Print --tenant's retention."
    )
    purge = actions.add_parser(
        "purge",
        parents=[common],
        help="forget what is past retention",
        description="Forget the events past retention (of --tenant, or of every tenant that has one), as "
        "`forget` does, keeping pinned events, those recording a decision still in force and the originals of "
        "duplicates recorded since; prints the receipts. Run it daily.",
    )
    purge.add_argument("--all-tenants", action="store_true", help="every tenant with a retention (maintenance)")


def _add_audit(commands: Any, common: argparse.ArgumentParser) -> None:
    audit = commands.add_parser(
        "audit", help="export or purge the audit trail", description="The audit trail of every read and write."
    )
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    export = audit_commands.add_parser(
        "export",
        parents=[common],
        help="print a tenant's audit rows as JSON lines",
        description="Print the audit rows of --tenant as JSON lines on stdout, oldest first.",
    )
    export.add_argument("--since", help="ISO 8601 date or time (default: everything)")
    purge = audit_commands.add_parser(
        "purge",
        parents=[common],
        help="delete audit rows older than the retention",
        description="Delete every tenant's audit rows older than AGENT_MEMORY_AUDIT_RETENTION_DAYS (or "
        "--older-than-days); run it daily, e.g. from cron or a Kubernetes CronJob.",
    )
    purge.add_argument("--older-than-days", type=int, help="override the retention setting")


def reference_flags() -> dict[str, str]:
    """Setting → the ``dest`` of the flag that sets it (for the generated reference)."""
    return {field: flag for flag, field in SETTING_FLAGS} | {"jwt_secret": "jwt_secret_file"}


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags that were given."""
    overrides: dict[str, Any] = {}
    for flag, field in SETTING_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    secret_file = getattr(args, "jwt_secret_file", None)
    if secret_file is not None:  # a file, never the secret itself: command lines are visible to every user
        try:
            overrides["jwt_secret"] = secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"--jwt-secret-file: cannot read {str(secret_file)!r} ({exc.strerror})") from exc
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agent-memory`` console script."""
    args = build_parser().parse_args(argv)
    is_server = args.command == "serve"
    try:
        settings = settings_from(args)
        # a server reports its errors to Sentry when a DSN is set (once, before anything can fail)
        reporter = error_reporting.start(settings) if is_server else None
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"agent-memory: setting {field}: {error['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"agent-memory: {exc}", file=sys.stderr)
        return 2
    # a replay prints its own report: the servers' and the database's chatter only when asked for
    quiet = args.command == "replay" and getattr(args, "log_level", None) is None
    configure_logging(
        settings.log_format if is_server else "console", "warning" if quiet else settings.log_level, reporter
    )
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
    if args.command == "reference":
        from agent_memory.server.reference import reference_command

        return await reference_command(
            args.output,
            check=args.check,
            parser=build_parser(),
            common=common_options(),
            setting_flags=reference_flags(),
        )
    from agent_memory.server import commands

    handlers = {
        "migrate": lambda: commands.migrate(settings),
        "doctor": lambda: commands.doctor_command(settings),
        "reindex": lambda: commands.reindex_command(
            settings, all_tenants=args.all_tenants, batch=args.batch, embeddings=args.embeddings
        ),
        "keys": lambda: _keys(commands, args, settings),
        "forget": lambda: _forget(commands, args, settings),
        "export": lambda: commands.export_command(settings, args.since, args.output),
        "backup": lambda: commands.backup_command(settings, args.output),
        "retention": lambda: (
            commands.retention_set_command(settings, None if args.forever else args.days)
            if args.retention_command == "set"
            else commands.retention_show_command(settings)
            if args.retention_command == "show"
            else commands.retention_purge_command(settings, all_tenants=args.all_tenants)
        ),
        "restore": lambda: _restore(commands, args, settings),
        "import": lambda: commands.import_command(settings, args.source),
        "audit": lambda: (
            commands.export_audit_command(settings, args.since)
            if args.audit_command == "export"
            else commands.purge_audit_command(settings, args.older_than_days)
        ),
        "views": lambda: (
            commands.set_view_command(settings, args.name, args.file)
            if args.views_command == "set"
            else commands.show_view_command(settings, args.name)
        ),
    }
    return await handlers[args.command]()


async def _keys(commands: Any, args: argparse.Namespace, settings: Settings) -> int:
    if args.keys_command == "create":
        result: int = await commands.create_key_command(
            settings, role=args.role, name=args.name, agent=args.agent, require_signature=args.require_signature
        )
    elif args.keys_command == "list":
        result = await commands.list_keys_command(settings)
    else:
        result = await commands.revoke_key_command(settings, args.key_id)
    return result


async def _forget(commands: Any, args: argparse.Namespace, settings: Settings) -> int:
    if args.everything and not args.yes:
        print(
            f"agent-memory: forget --everything deletes all of tenant {settings.tenant!r}: add --yes", file=sys.stderr
        )
        return 2
    result: int = await commands.forget_command(
        settings, event_ids=args.event_ids, session_id=args.session_id, subject=args.subject, everything=args.everything
    )
    return result


async def _restore(commands: Any, args: argparse.Namespace, settings: Settings) -> int:
    if not args.yes:
        print("agent-memory: restore replaces what the database holds now: add --yes", file=sys.stderr)
        return 2
    result: int = await commands.restore_command(settings, args.source)
    return result


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
