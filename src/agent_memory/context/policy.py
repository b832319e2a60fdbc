"""Channel policy and section caps: what may be loaded where, and how much of it.

| channel | sensitivities loaded | views loaded |
|---|---|---|
| private | none, low, high | all |
| team | none, low, high | all but preferences |
| agent | none, low | identity, rules (+ the handoff) |
| public | none, low | identity, rules |

``secret`` is never loaded anywhere. Caps are given for the default budget of 65,000 tokens and scale
linearly with the budget a caller asks for; they are hard limits.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

POLICY_VERSION: Final = "2026-11-28.1"
DEFAULT_BUDGET: Final = 65_000
MIN_BUDGET: Final = 512

SECTIONS: Final = ("identity", "rules", "handoff", "task_state", "decisions", "evidence", "recent")
BASE_CAPS: Final = MappingProxyType(
    {
        "identity": 1_200,
        "rules": 6_000,
        "handoff": 6_000,
        "task_state": 3_000,
        "decisions": 4_000,
        "evidence": 28_000,
        "recent": 8_000,
    }
)
RESERVE: Final = 8_800  # never filled: room for the caller's own prompt and the answer's framing

SENSITIVITIES_LOADED: Final = MappingProxyType(
    {
        "private": frozenset({"none", "low", "high"}),
        "team": frozenset({"none", "low", "high"}),
        "agent": frozenset({"none", "low"}),
        "public": frozenset({"none", "low"}),
    }
)
VIEWS_LOADED: Final = MappingProxyType(
    {
        "private": ("identity", "rules", "preferences", "glossary"),
        "team": ("identity", "rules", "glossary"),
        "agent": ("identity", "rules"),
        "public": ("identity", "rules"),
    }
)
VIEW_SECTION: Final = MappingProxyType(
    {"identity": "identity", "rules": "rules", "preferences": "rules", "glossary": "rules"}
)


def caps_for(budget: int) -> dict[str, int]:
    """Each section's hard cap for ``budget`` tokens: the default caps scaled by budget / 65,000."""
    return {name: cap * budget // DEFAULT_BUDGET for name, cap in BASE_CAPS.items()}


def may_load(channel: str, sensitivity: str) -> bool:
    """Whether content of ``sensitivity`` may be loaded into a bundle shown in ``channel``."""
    return sensitivity in SENSITIVITIES_LOADED[channel]


assert sum(BASE_CAPS.values()) + RESERVE == DEFAULT_BUDGET
