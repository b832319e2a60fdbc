"""Summary drift guard: a summary or fact whose numbers newer events contradict.

A *claim* is a sentence with a number in it, reduced to its content words and the numbers it states
("the ACB budget is 32K tokens" → {acb, budget, token} and {32000}). A newer event contradicts an older
summary or fact when one of its claims shares at least two content words — and at least half of the smaller
claim's words — with a claim of the summary, while stating different numbers. The events win: the summary is
left out and the conflict is reported with both sides' ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*([kKmM])?(?![\w])")
_WORD = re.compile(r"[a-zA-Z][a-zA-Z_-]{2,}")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "that",
        "this",
        "with",
        "from",
        "into",
        "than",
        "then",
        "now",
        "our",
        "your",
        "their",
        "its",
        "not",
        "but",
        "all",
        "any",
        "can",
        "will",
        "would",
        "should",
        "could",
        "about",
        "after",
        "before",
        "over",
        "under",
        "said",
        "says",
        "is",
    ]
)
SUMMARY_KINDS = frozenset({"summary", "fact"})


@dataclass(frozen=True)
class Claim:
    words: frozenset[str]
    numbers: frozenset[float]
    sentence: str


@dataclass(frozen=True)
class Statement:
    """Something said: an event's id, kind, time and text."""

    id: str
    kind: str
    ts: datetime
    text: str


@dataclass(frozen=True)
class Contradiction:
    older: Statement
    newer: list[Statement]
    says: str
    newer_says: str


def _stem(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _value(digits: str, suffix: str | None) -> float:
    number = float(digits.replace(",", ""))
    return number * {"k": 1e3, "m": 1e6}.get((suffix or "").lower(), 1)


def claims(text: str) -> list[Claim]:
    """The sentences of ``text`` that state numbers."""
    found = []
    for sentence in _SENTENCE.split(text):
        numbers = frozenset(_value(m[1], m[2]) for m in _NUMBER.finditer(sentence))
        if not numbers:
            continue
        words = frozenset(_stem(w) for w in _WORD.findall(sentence)) - _STOP
        if len(words) >= 2:
            found.append(Claim(words, numbers, sentence.strip()))
    return found


def _contradicts(old: Claim, new: Claim) -> bool:
    shared = old.words & new.words
    return len(shared) >= 2 and len(shared) * 2 >= min(len(old.words), len(new.words)) and old.numbers != new.numbers


def find(statements: list[Statement]) -> list[Contradiction]:
    """Every summary or fact among ``statements`` that a newer non-summary statement contradicts."""
    parsed = {s.id: claims(s.text) for s in statements}
    found = []
    for old in statements:
        if old.kind not in SUMMARY_KINDS:
            continue
        for old_claim in parsed[old.id]:
            newer = [
                (new, new_claim)
                for new in statements
                if new.ts > old.ts and new.kind not in SUMMARY_KINDS
                for new_claim in parsed[new.id]
                if _contradicts(old_claim, new_claim)
            ]
            if newer:
                newest = max(newer, key=lambda pair: (pair[0].ts, pair[0].id))
                found.append(
                    Contradiction(
                        older=old,
                        newer=sorted({n.id: n for n, _ in newer}.values(), key=lambda s: (s.ts, s.id)),
                        says=old_claim.sentence,
                        newer_says=newest[1].sentence,
                    )
                )
                break
    return found
