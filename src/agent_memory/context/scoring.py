"""Ranking: score = α·relevance + β·recency + γ·importance, with deterministic tie-breaks (P7).

Recency is measured from a reference time taken from the store (the newest item considered, or ``as_of``),
never from the wall clock, so the same store and request give the same bundle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

ALPHA: Final = 0.6
BETA: Final = 0.25
GAMMA: Final = 0.15
HALF_LIFE_DAYS: Final = 7.0


def recency(ts: datetime | None, reference: datetime | None) -> float:
    """1.0 at the reference time, halving every week before it."""
    if ts is None or reference is None:
        return 0.0
    age_days = max(0.0, (reference - ts).total_seconds() / 86_400)
    return float(0.5 ** (age_days / HALF_LIFE_DAYS))


def score(relevance: float, recency_value: float, importance: float) -> float:
    """The combined score, rounded so that float noise never reorders equal items."""
    return round(ALPHA * relevance + BETA * recency_value + GAMMA * importance, 6)


def order_key(
    score_value: float, importance: float, ts: datetime | None, token_est: int, ident: str
) -> tuple[float, float, float, int, str]:
    """Sort key: score, then importance, then recency, then smaller size, then id."""
    return (-score_value, -importance, -(ts.timestamp() if ts else 0.0), token_est, ident)
