"""Text utilities of the write path: normalising, token estimates, chunking and excerpts.

Token counts are *estimates*, computed once at write time and stored; the read path never recomputes them.
The estimate (about four characters a token, never less than one token per word-ish piece) errs high for
code and non-English text, which keeps budgets safe.
"""

from __future__ import annotations

import hashlib
import math
import re

_WS = re.compile(r"\s+")
_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


def normalise(text: str) -> str:
    """Case-folded text with runs of white space collapsed: what "the same text" means for dedupe."""
    return _WS.sub(" ", text).strip().casefold()


def text_hash(text: str) -> str:
    """SHA-256 hex digest of the normalised text."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text``: the larger of chars/4 and 0.75 x (words and punctuation), at least 1."""
    if not text:
        return 1
    by_chars = math.ceil(len(text) / 4)
    by_pieces = math.ceil(len(_PIECES.findall(text)) * 0.75)
    return max(1, by_chars, by_pieces)


def chunk_text(text: str, target_tokens: int = 400) -> list[str]:
    """Cut ``text`` into pieces of about ``target_tokens`` each, on paragraph, then line or sentence,
    then word boundaries. Text within the target is one chunk. Joining the chunks with the separators
    they were cut at gives back the text (less surrounding white space)."""
    if estimate_tokens(text) <= target_tokens:
        return [text.strip() or text]
    chunks: list[str] = []
    current: list[str] = []
    current_tokens = 0
    for unit in _units(text, target_tokens):
        unit_tokens = estimate_tokens(unit)
        if current and current_tokens + unit_tokens > target_tokens:
            chunks.append("\n".join(current).strip())
            current, current_tokens = [], 0
        current.append(unit)
        current_tokens += unit_tokens
    if current:
        chunks.append("\n".join(current).strip())
    return [chunk for chunk in chunks if chunk]


def _units(text: str, target_tokens: int) -> list[str]:
    """Pieces no larger than the target: paragraphs, split further into sentences, then words."""
    units: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        if estimate_tokens(paragraph) <= target_tokens:
            units.append(paragraph)
            continue
        for sentence in _SENTENCE.split(paragraph):
            if estimate_tokens(sentence) <= target_tokens:
                units.append(sentence)
            else:
                units.extend(_split_words(sentence, target_tokens))
    return [unit for unit in units if unit.strip()]


def _split_words(text: str, target_tokens: int) -> list[str]:
    """Split an overlong run of text at spaces (or hard, for text with none) into target-sized pieces."""
    max_chars = target_tokens * 3
    pieces: list[str] = []
    while len(text) > max_chars or estimate_tokens(text) > target_tokens:
        cut = text.rfind(" ", 0, max_chars)
        if cut <= 0:
            cut = max_chars
        pieces.append(text[:cut])
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def excerpt(text: str, *, head_lines: int = 30, tail_lines: int = 5, max_chars: int = 2000) -> str:
    """A bounded excerpt of long output: the first and last lines with a marker saying what was cut."""
    lines = text.splitlines()
    if len(lines) > head_lines + tail_lines:
        omitted = len(lines) - head_lines - tail_lines
        kept = [*lines[:head_lines], f"[... {omitted} lines omitted ...]", *lines[-tail_lines:]]
    else:
        kept = lines
    result = "\n".join(kept)
    if len(result) > max_chars:
        half = max_chars // 2
        result = f"{result[:half]}\n[... {len(result) - max_chars} characters omitted ...]\n{result[-half:]}"
    return result
