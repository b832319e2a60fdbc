"""The bundle being assembled: the request, one filler per section under its hard cap, and what was left
out and why. Every section builder offers items here; nothing else decides whether an item fits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from agent_memory.caller import Caller
from agent_memory.context.bundle import Item, OmissionReason
from agent_memory.context.policy import DEFAULT_BUDGET, may_load
from agent_memory.vocabulary import Channel

END_OF_TIME: Final = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class RecallRequest:
    """What the caller asked for."""

    query: str
    session_id: str
    channel: Channel
    budget_tokens: int = DEFAULT_BUDGET
    intent: str | None = None
    include_history: bool = False
    as_of: datetime | None = None

    @property
    def continuing(self) -> bool:
        return self.intent == "continue" or not self.query.strip()


@dataclass
class Filler:
    """One section being filled best-first under its cap."""

    name: str
    cap: int
    items: list[Item] = field(default_factory=list)
    used: int = 0

    def fits(self, tokens: int) -> bool:
        return self.used + tokens <= self.cap

    def add(self, item: Item) -> None:
        self.items.append(item)
        self.used += item.token_est


@dataclass
class Assembly:
    """A bundle under construction: the fillers, the omissions so far, and what is already loaded (so that
    a later section does not load it again)."""

    request: RecallRequest
    caller: Caller
    fillers: dict[str, Filler]
    # (section, reason) -> the ids left out, in order (a dict: an ordered set)
    omitted: dict[tuple[str, OmissionReason], dict[str, None]] = field(default_factory=lambda: defaultdict(dict))
    loaded_events: set[str] = field(default_factory=set)
    loaded_texts: set[str] = field(default_factory=set)
    loaded_decisions: set[str] = field(default_factory=set)
    contradicted: set[str] = field(default_factory=set)  # summaries newer events contradict: never loaded
    considered: int = 0

    def omit(self, section: str, reason: OmissionReason, ident: str) -> None:
        """Record that ``ident`` was left out of ``section`` for ``reason`` (once)."""
        self.omitted[(section, reason)].setdefault(ident)

    def offer(self, section: str, item: Item, ident: str) -> bool:
        """Add ``item`` if it fits the section's cap; otherwise record a budget omission."""
        self.considered += 1
        filler = self.fillers[section]
        if filler.fits(item.token_est):
            filler.add(item)
            return True
        self.omit(section, "budget", ident)
        return False

    def offer_made(self, section: str, tokens: int, make: Callable[[], Item], ident: str) -> bool:
        """``offer`` the item ``make`` builds, building it only if its ``tokens`` fit (evidence weighs hundreds of
        candidates, and most no longer fit once the section is full)."""
        if self.fillers[section].fits(tokens):
            return self.offer(section, make(), ident)
        self.considered += 1
        self.omit(section, "budget", ident)
        return False

    def loadable(self, section: str, ident: str, sensitivity: str, kind: str, refs: Iterable[str]) -> bool:
        """Whether the channel may show it and it is not a summary that cites nothing (else: omitted)."""
        if not may_load(self.request.channel, sensitivity):
            self.omit(section, "privacy", ident)
            return False
        if kind == "summary" and not list(refs):
            self.omit(section, "unreferenced summary", ident)
            return False
        return True
