"""Opaque, time-ordered ids with a type prefix (``evt_``, ``dec_``, ``chk_`` ...).

An id is the prefix and a 26-character ULID (48-bit milliseconds + 80 random bits, Crockford base32),
so ids sort by creation time and the prefix tells a reader (and a validator) what kind of thing it names.
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {
    "event": "evt",
    "chunk": "chk",
    "decision": "dec",
    "task": "tsk",
    "handoff": "hnd",
    "artifact": "art",
    "api_key": "key",
}

_ID_RE = re.compile(r"^(evt|chk|dec|tsk|hnd|art|key)_[0-9A-HJKMNP-TV-Z]{26}$")


def new_id(kind: str) -> str:
    """A fresh id for ``kind`` (a key of ``PREFIXES``)."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{PREFIXES[kind]}_{''.join(reversed(chars))}"


def kind_of(ident: str) -> str | None:
    """The kind an id names (``"event"``, ``"decision"`` ...), or None when it is not one of our ids."""
    if not _ID_RE.match(ident):
        return None
    prefix = ident.split("_", 1)[0]
    return next(kind for kind, p in PREFIXES.items() if p == prefix)
