"""Temporal cues in a query: "two weeks ago", "yesterday", "last month", "in May", "in 2023", "last time".

A cue gives a time window (evidence inside it is preferred, and the newest chunks inside it join the candidate
pool) or asks for the latest occurrence (recency weighs more). Relative cues are measured from the reference
time of the bundle (``as_of``, else the newest thing the store holds), never from the clock (P7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

_NUMBERS: Final = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a few": 3, "a couple of": 2, "couple of": 2, "few": 3,
    "several": 3,
}  # fmt: skip
_UNITS: Final = {"day": 1.0, "week": 7.0, "month": 30.0, "year": 365.0}
_MONTHS: Final = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_AMOUNT: Final = "(" + "|".join([r"\d+", *sorted(_NUMBERS, key=len, reverse=True)]) + ")"
_AGO: Final = re.compile(rf"\b{_AMOUNT}\s+(day|week|month|year)s?\s+ago\b")
_LAST: Final = re.compile(r"\b(last|past|previous)\s+(week|weekend|month|year)\b")
_THIS: Final = re.compile(r"\bthis\s+(week|weekend|month|year)\b")
_DAY: Final = re.compile(r"\b(yesterday|today|tonight|this morning)\b")
_MONTH: Final = re.compile(rf"\b(?:in|during|since|on|of)\s+({'|'.join(_MONTHS)})(?:\s*,?\s*((?:19|20)\d\d))?\b")
_YEAR: Final = re.compile(r"\b(?:in|during|since|of)\s+((?:19|20)\d\d)\b")
_LATEST: Final = re.compile(r"\b(last time|most recent(?:ly)?|recently|lately|latest|the last)\b")


@dataclass(frozen=True)
class TimeCue:
    """What the query says about time: a window to prefer, and whether the latest occurrence is wanted."""

    window: tuple[datetime, datetime] | None = None
    prefer_recent: bool = False
    phrase: str = ""

    def contains(self, ts: datetime) -> bool:
        return self.window is not None and self.window[0] <= ts <= self.window[1]


NONE: Final = TimeCue()


def needs_reference(query: str) -> bool:
    """Whether ``query`` has a cue that is measured from the reference time."""
    q = query.lower()
    return any(p.search(q) for p in (_AGO, _LAST, _THIS, _DAY, _MONTH))


def cue(query: str, reference: datetime | None) -> TimeCue:
    """The temporal cue of ``query`` (the first that matches), ``NONE`` when it has none."""
    q = query.lower()
    prefer_recent = bool(_LATEST.search(q))
    window = _window(q, reference)
    if window is None:
        return TimeCue(prefer_recent=prefer_recent, phrase="latest" if prefer_recent else "")
    phrase, start, end = window
    return TimeCue(window=(start, end), prefer_recent=prefer_recent, phrase=phrase)


def _window(q: str, ref: datetime | None) -> tuple[str, datetime, datetime] | None:
    return _absolute(q, ref) or (_relative(q, ref) if ref is not None else None)


def _absolute(q: str, ref: datetime | None) -> tuple[str, datetime, datetime] | None:
    """ "in 2023", "in May 2023", "in May" (the last May up to the reference time)."""
    if (m := _YEAR.search(q)) and not _MONTH.search(q):
        year = int(m[1])
        return m[0], datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    m = _MONTH.search(q)
    if m is None or (not m[2] and ref is None):
        return None
    month = _MONTHS.index(m[1]) + 1
    if m[2]:
        year = int(m[2])
    else:
        assert ref is not None
        year = ref.year if month <= ref.month else ref.year - 1
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return m[0], start - timedelta(days=1), end + timedelta(days=1)


def _relative(q: str, ref: datetime) -> tuple[str, datetime, datetime] | None:
    """ "two weeks ago", "last month", "this week", "yesterday", measured from ``ref``."""
    if m := _AGO.search(q):
        amount, unit = _NUMBERS.get(m[1]) or int(m[1]), _UNITS[m[2]]
        centre = ref - timedelta(days=amount * unit)
        half = timedelta(days=max(unit * 0.75, 1.5))
        return m[0], centre - half, min(ref, centre + half)
    if m := _LAST.search(q) or _THIS.search(q):
        last = m[0].split()[0] != "this"
        unit = _UNITS.get(m[2] if last else m[1], 7.0)
        return m[0], ref - timedelta(days=(2 if last else 1) * unit + 1), ref
    if m := _DAY.search(q):
        days = 2.0 if m[1] == "yesterday" else 1.0
        return m[0], ref - timedelta(days=days), ref
    return None
