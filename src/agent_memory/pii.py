"""Personal data detection, for classifying sensitivity: e-mail addresses, phone numbers and IBANs.

It only says whether text is personal; nothing is redacted (that is ``redact``'s job, for secrets).
"""

from __future__ import annotations

import re

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])(?P<local>[A-Za-z0-9._%+-]{1,64})@"
    r"(?:[A-Za-z][A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+[1-9][0-9 ().-]{6,22}[0-9](?![\w])")
_NATIONAL_PHONE = re.compile(
    r"(?<![\w.-])(?<![0-9][ .-])(?:"
    r"\([0-9]{3}\)[ ]?[0-9]{3}-[0-9]{4}"  # (555) 123-4567
    r"|[0-9]{3}(?P<us>[-.])[0-9]{3}(?P=us)[0-9]{4}"  # 555-123-4567, 555.123.4567
    r"|0[1-9](?P<fr>[ .])[0-9]{2}(?:(?P=fr)[0-9]{2}){3}"  # 06 12 34 56 78
    r"|07[0-9]{3} [0-9]{6}"  # 07700 900123
    r"|0[0-9]{2,4}(?P<uk>[ -])[0-9]{3,4}(?P=uk)[0-9]{3,4}"  # 020 7946 0958
    r")(?![\w-])(?![ .-][0-9])"
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}"
    r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z0-9])"
)


def _is_international_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 8 <= digits <= 15 and not re.search(r"[ .-]{2}|[.-][ ]|[ ][.-]", candidate)  # E.164 allows 15


def _is_iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def contains_pii(text: str) -> bool:
    """Whether ``text`` holds an e-mail address, a phone number or an IBAN (detection only, no redaction)."""
    if any(m["local"].lower() != "git" for m in _EMAIL.finditer(text)):
        return True
    if any(_is_international_phone(m.group()) for m in _INTERNATIONAL_PHONE.finditer(text)):
        return True
    if _NATIONAL_PHONE.search(text):
        return True
    return any(_is_iban(m.group()) for m in _IBAN.finditer(text))
