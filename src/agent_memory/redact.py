"""Replace secrets with markers before an event's text or metadata reaches the database.

``redact(text)`` returns the text with each secret replaced by ``[REDACTED:<kind>]`` and says which
*kinds* it found, never the values. Only the secret itself is replaced: keys, quotes, schemes, users and
hosts stay, so ``postgres://app:hunter2@db/x`` becomes ``postgres://app:[REDACTED:connection_string]@db/x``.
Redaction is idempotent (markers never match, and passes repeat until one finds nothing) and every
pattern runs in linear time.

==================  =======================================================================================
kind                what is replaced
==================  =======================================================================================
api_key             provider keys by their prefix: OpenAI / Anthropic / OpenRouter ``sk-…`` (a digit
                    required), Stripe ``sk_live_ rk_live_ sk_test_ rk_test_ whsec_``, AWS key ids
                    ``AKIA ASIA ABIA ACCA``, GitHub ``ghp_ gho_ ghu_ ghs_ ghr_ github_pat_``, GitLab
                    ``glpat- gldt- glrt- glptt- glsoat- glcbt- glft-``, Slack ``xox[abposr]- xapp-`` and
                    webhook paths, Google ``AIza… ya29.… GOCSPX-``, Hugging Face ``hf_``, SendGrid
                    ``SG.x.y``, Twilio ``SK…``/``AC…`` (32 hex), npm ``npm_``, PyPI ``pypi-Ag…``, Groq
                    ``gsk_``, Replicate ``r8_``, xAI ``xai-``, Perplexity ``pplx-``, DigitalOcean
                    ``dop_v1_``, Shopify ``shpat_``; also any value labelled ``api_key`` / ``apiKey``
aws_secret          the 40-character value labelled ``aws_secret_access_key`` / ``SecretAccessKey``
bearer_token        ``Authorization: Bearer|Token <v>`` (any length); a bare ``Bearer <v>`` when ``<v>`` is
                    12+ token characters with a digit
jwt                 three base64url segments, the first starting with ``eyJ``
private_key         a PEM ``-----BEGIN … PRIVATE KEY[ BLOCK]-----`` block through its END line (RSA, EC,
                    DSA, OPENSSH, ENCRYPTED, PGP); with no END line, through the base64 lines that follow
password            a value labelled by a key ending in password, passwd, passphrase, pwd, ``_pass``,
                    secret, token, secret/private/signing/encryption/master/access key (case-insensitive,
                    camelCase or snake_case) in ``key=value``, ``key: value``, ``key := value``,
                    ``key => value``, JSON ``"key": "value"`` (also with escaped quotes), ``<key>v</key>``
                    and ``--key value``; ``Authorization: Basic <v>``
connection_string   the password of ``scheme://user:password@host`` (postgres, mysql, mongodb+srv,
                    redis, amqp, https, …)
payment_card        13 to 19 digits, plain or grouped by one space/dash, passing Luhn, with a card-brand
                    first digit (2 to 6) and Visa/Amex/Mastercard lengths
==================  =======================================================================================

Labelled values are skipped when they are plainly not secrets: empty, placeholders (``***``, ``<…>``,
``${VAR}``, ``{{ … }}``, ``%s``), paths (``PWD=/home/me``), and, unquoted, code (``None``, ``str``, a call
``getpass()``, ``os.environ[…]``, a dotted reference ``settings.token``, an identifier that itself names
a secret as in ``password=password``). Pagination and tokenizer keys (``next_token``, ``pageToken``,
``eos_token``…) are not secrets.

``redact_value`` walks JSON-like metadata, redacting every string (keys too), and replaces the whole
value of a key that names a secret (the keys above plus ``authorization`` and ``cookie``).
Personal data (e-mail, phone number, IBAN) is only *detected*, by ``agent_memory.pii``, for sensitivity labels.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["KINDS", "Redaction", "marker", "redact", "redact_value"]

KINDS: Final = (
    "api_key",
    "aws_secret",
    "bearer_token",
    "connection_string",
    "jwt",
    "password",
    "payment_card",
    "private_key",
)

_MARKER = re.compile(r"\[REDACTED:[a-z_]+\]")


def marker(kind: str) -> str:
    """The text that replaces a secret of ``kind``."""
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True, slots=True)
class Redaction:
    """The outcome of ``redact``: the safe text, the sorted unique kinds found and how many replacements."""

    text: str
    kinds: tuple[str, ...]
    count: int

    @property
    def found(self) -> bool:
        """Whether anything was redacted."""
        return self.count > 0


@dataclass(frozen=True, slots=True)
class _Rule:
    """One pattern; the secret is the first of ``groups`` that took part in the match (else all of it)."""

    pattern: re.Pattern[str]
    kind: str | Callable[[re.Match[str]], str]
    accept: Callable[[re.Match[str]], bool] | None = None
    groups: tuple[str, ...] = ("s",)

    def apply(self, text: str, found: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            if self.accept is not None and not self.accept(match):
                return match.group()
            kind = self.kind if isinstance(self.kind, str) else self.kind(match)
            found[kind] += 1
            start, end = _secret_span(match, self.groups)
            return match.string[match.start() : start] + marker(kind) + match.string[end : match.end()]

        return self.pattern.sub(replace, text)


def _secret_span(match: re.Match[str], groups: tuple[str, ...]) -> tuple[int, int]:
    for name in groups:
        if name in match.re.groupindex and match.start(name) != -1:
            return match.span(name)
    return match.span()


# --- private keys -------------------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-----BEGIN (?P<label>(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?)-----")
_LINE_END = r"(?=[\r\n]|\\[rn]|\Z)"
_PEM_HEADER = rf"(?:Proc-Type|DEK-Info|Version|Comment|Charset|Hash):[^\r\n\\]*{_LINE_END}"
_PEM_NEWLINE = r"(?:\r?\n|\\r\\n|\\n)"  # real or JSON-escaped
_PEM_BODY = re.compile(rf"(?:{_PEM_NEWLINE}[ \t]*(?:{_PEM_HEADER}|[A-Za-z0-9+/=]+{_LINE_END}|(?={_PEM_NEWLINE})))*")


def _redact_private_keys(text: str, found: Counter[str]) -> str:
    """Replace PEM private-key blocks; ``str.find`` per label keeps unterminated blocks linear."""
    pieces: list[str] = []
    pos = 0
    unterminated: set[str] = set()
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < pos:
            continue
        end_line = f"-----END {begin['label']}-----"
        end = -1 if begin["label"] in unterminated else text.find(end_line, begin.end())
        if end == -1:
            unterminated.add(begin["label"])
            stop = _PEM_BODY.match(text, begin.end())
            block_end = stop.end() if stop else begin.end()
        else:
            block_end = end + len(end_line)
        pieces += [text[pos : begin.start()], marker("private_key")]
        found["private_key"] += 1
        pos = block_end
    pieces.append(text[pos:])
    return "".join(pieces)


# --- labelled values ----------------------------------------------------------------------------------

# Words that end a secret's key, by first letter. The regex matches that letter first (a character set
# the engine skips to quickly) and then, knowing which letter it was, the rest case-insensitively.
_LABEL_WORDS: Final = {
    "p": r"ass(?:word|wd|phrase)|wd|rivate[_.-]?key",
    "s": r"ecret(?:[_.-]?key)?|igning[_.-]?key",
    "t": r"oken",
    "a": r"pi[_.-]?key|ccess[_.-]?key",
    "e": r"ncryption[_.-]?key",
    "m": r"aster[_.-]?key",
    "_.-": r"pass",  # DB_PASS, not bypass
}


def _either_case(letters: str) -> str:
    return "[" + "".join(re.escape(c) + (c.upper() if c.isalpha() else "") for c in letters) + "]"


_LABEL_WORD = _either_case("".join(_LABEL_WORDS)) + (
    "(?:" + "|".join(f"(?<={_either_case(first)})(?i:{rest})" for first, rest in _LABEL_WORDS.items()) + ")"
)
_KEY = rf"[A-Za-z0-9_.-]*?{_LABEL_WORD}"
_KEY_CHARACTERS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SECRET_KEY_NAME = re.compile(rf"{_KEY}|(?i:(?:[A-Za-z0-9_.-]*[_.-])?(?:authorization|cookie))")
_NOT_SECRET_KEY = re.compile(
    r"(?:next|page|continuation|sync|cursor|eos|bos|pad|unk|sep|cls|mask)[_.-]?token\Z", re.IGNORECASE
)
_VALUE = (
    r"(?:[rRbBfFuU]{1,2}(?=[\"']))?"
    r"(?:\\\"(?P<eq>(?:[^\"\\\r\n]|\\(?!\"))*+)\\\""
    r"|\"(?P<dq>(?:[^\"\\\r\n]|\\.)*+)\""
    r"|'(?P<sq>[^'\r\n]*+)'"
    r"|(?P<bare>[^\s\"'`,;&<>(){}\[\]\\]++))"  # no lookahead after it: see _accept_labelled
)
_VALUE_GROUPS: Final = ("eq", "dq", "sq", "bare")
_ANNOTATION = r"[A-Za-z_][\w.]{0,40}(?:\[[\w., |\[\]]{0,40}\])?"  # str, Optional[str], SecretStr
# Atomic: once ``: str =`` matched, the engine must not retry with ``str`` as the value (not idempotent).
_SEPARATOR = rf"[ \t]*(?>:[ \t]*{_ANNOTATION}(?:[ \t]*\|[ \t]*{_ANNOTATION}){{0,3}}[ \t]*=(?!=)|:=|=>|[:=](?!=))[ \t]*"
_KEY_VALUE = re.compile(  # anchored on the word; ``_full_key`` finds the rest of the key
    rf"(?P<key>{_LABEL_WORD})(?![A-Za-z0-9_.-])\\?[\"']?{_SEPARATOR}(?!\[REDACTED:){_VALUE}"
)
_CLI_FLAG = re.compile(
    r"(?<!\S)--?(?P<key>(?i:[A-Za-z0-9-]*?(?:password|passwd|passphrase|token|secret|api-?key)))"
    rf"[ \t]+(?!-){_VALUE}"
)
_XML_ELEMENT = re.compile(rf"<(?P<key>{_KEY})>(?!\[REDACTED:)(?P<s>[^<\r\n]{{1,500}})</(?P=key)>")
_PLACEHOLDER = re.compile(
    r"[*•?x]+|\.{3,}|…|%s|<[^>]*>|\$\{?[A-Za-z_]\w*\}?|\{\{.*\}\}|\{[A-Za-z_]\w*\}|~?/[\w.@-]*(?:/[\w.@-]*)*",
    re.IGNORECASE,
)
_CODE_WORDS: Final = frozenset(
    {
        *("none", "null", "nil", "true", "false", "undefined", "yes", "no", "on", "off"),
        *("str", "string", "int", "bytes", "bool", "secretstr", "optional", "any", "object", "required"),
        *("await", "new", "self", "this", "cls", "function", "lambda"),
    }
)
_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")
_DOTTED_REFERENCE = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")


def _kind_for_key(key: str) -> str:
    """The kind reported for a value labelled ``key`` (``apiKey`` → api_key, ``db_password`` → password)."""
    name = re.sub(r"[-. ]", "_", key.lower())
    if re.search(r"secret_?access_?key", name):
        return "aws_secret"
    if re.search(r"api_?key\Z", name):
        return "api_key"
    if re.search(r"private_?key\Z", name):
        return "private_key"
    if re.search(r"(?:authorization|cookie)\Z", name):
        return "bearer_token"
    return "password"


def _names_secret(key: str) -> bool:
    """Whether a metadata key (``password``, ``clientSecret``, ``X-Api-Key``, ``Authorization``) is secret."""
    key = key.strip().replace(" ", "_")
    return bool(_SECRET_KEY_NAME.fullmatch(key)) and not _NOT_SECRET_KEY.search(key)


def _full_key(match: re.Match[str]) -> tuple[str, str]:
    """The whole key ending at group ``key`` (``DB_PASSWORD`` for ``PASSWORD``) and the character before."""
    text, start = match.string, match.start("key")
    while start > 0 and text[start - 1] in _KEY_CHARACTERS:
        start -= 1
    return text[start : match.end("key")], text[start - 1 : start]


def _accept_labelled(match: re.Match[str]) -> bool:
    """Skip labelled values that are plainly not secrets: placeholders, paths and code."""
    key, before = _full_key(match)
    if before in {"/", "\\"} or _NOT_SECRET_KEY.search(key):  # /etc/passwd: is a path
        return False
    start, end = _secret_span(match, _VALUE_GROUPS)
    value = match.string[start:end]
    if not value.strip() or _PLACEHOLDER.fullmatch(value) or _MARKER.fullmatch(value):
        return False
    if match.start("bare") == -1:
        return True
    # Checked here rather than in the regex: a failed lookahead would make the engine rescan the value
    # from every later start inside it (quadratic on ``password=password=…(``).
    calls_or_indexes = match.string[end : end + 1] in {"(", "[", "{"}
    return not (
        calls_or_indexes
        or value.lower() in _CODE_WORDS
        or _DOTTED_REFERENCE.fullmatch(value)
        or (_IDENTIFIER.fullmatch(value) and _names_secret(value))
    )


def _labelled_kind(match: re.Match[str]) -> str:
    return _kind_for_key(_full_key(match)[0])


# --- the rest ----------------------------------------------------------------------------------------

# (literal head, rest): the head comes first so the regex engine can skip ahead to it; the boundary
# check right after it (``_prefixed``) rules out a head glued to a longer word.
_PROVIDER_KEYS = (
    ("sk-", r"(?=[A-Za-z0-9_-]*?[0-9])[A-Za-z0-9_-]{20,}"),  # OpenAI, Anthropic, OpenRouter
    ("sk_", r"(?:live|test)_[A-Za-z0-9]{10,}"),  # Stripe secret
    ("rk_", r"(?:live|test)_[A-Za-z0-9]{10,}"),  # Stripe restricted
    ("whsec_", r"[A-Za-z0-9+/=]{20,}"),  # Stripe webhook secret
    ("A", r"(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),  # AWS access key id
    ("gh", r"[pousr]_[A-Za-z0-9]{30,}"),  # GitHub
    ("github_pat_", r"[A-Za-z0-9_]{30,}"),  # GitHub fine-grained
    ("gl", r"(?:pat|dt|rt|ptt|soat|cbt|ft)-[A-Za-z0-9_-]{20,}"),  # GitLab
    ("xox", r"[abposr]-[A-Za-z0-9-]{10,}"),  # Slack
    ("xapp-", r"[0-9]-[A-Za-z0-9-]{10,}"),  # Slack app-level
    ("AIza", r"[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),  # Google API key
    ("ya29.", r"[A-Za-z0-9_-]{20,}"),  # Google OAuth access token
    ("GOCSPX-", r"[A-Za-z0-9_-]{20,}"),  # Google OAuth client secret
    ("hf_", r"[A-Za-z0-9]{30,}"),  # Hugging Face
    ("SG.", r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),  # SendGrid
    ("SK", r"[0-9a-f]{32}(?![A-Za-z0-9])"),  # Twilio API key
    ("AC", r"[0-9a-f]{32}(?![A-Za-z0-9])"),  # Twilio account SID
    ("npm_", r"[A-Za-z0-9]{30,}"),  # npm
    ("pypi-Ag", r"[A-Za-z0-9_-]{50,}"),  # PyPI
    ("gsk_", r"[A-Za-z0-9]{40,}"),  # Groq
    ("r8_", r"[A-Za-z0-9]{30,}"),  # Replicate
    ("xai-", r"[A-Za-z0-9]{40,}"),  # xAI
    ("pplx-", r"[A-Za-z0-9]{40,}"),  # Perplexity
    ("do", r"[opr]_v1_[a-f0-9]{64}"),  # DigitalOcean
    ("shp", r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),  # Shopify
)
_SLACK_WEBHOOK = r"hooks\.slack\.com/services/(?P<s>[A-Za-z0-9_/-]{20,})"


def _prefixed(head: str, rest: str) -> str:
    literal = re.escape(head)
    return f"{literal}(?<![A-Za-z0-9_-]{literal}){rest}"


_CREDENTIAL = r"[A-Za-z0-9._~+/-]*[A-Za-z0-9_~+/-]=*"


def _authorization_kind(match: re.Match[str]) -> str:
    return "password" if match["scheme"].lower() == "basic" else "bearer_token"


def _is_card(match: re.Match[str]) -> bool:
    """Luhn-valid, a card brand's first digit, and Visa/Amex/Mastercard lengths where they apply."""
    digits = [int(c) for c in match.group() if c.isdigit()]
    length, first = len(digits), digits[0]
    checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    if checksum % 10 or not 2 <= first <= 6:  # card brands start with 2..6
        return False
    prefix = "".join(map(str, digits[:2]))
    if first == 4:  # Visa
        return length in {13, 16, 19}
    if prefix in {"34", "37"}:
        return length == 15  # Amex
    if first == 2 or "51" <= prefix <= "55":  # Mastercard
        return length == 16
    return True


_RULES: Final = (
    _Rule(
        re.compile(
            r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:@/?#\[\]]*:(?!\[REDACTED:)(?P<s>[^\s@/]+)@"
        ),
        "connection_string",
    ),
    _Rule(
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        "jwt",
    ),
    _Rule(re.compile("|".join([*(_prefixed(*key) for key in _PROVIDER_KEYS), _SLACK_WEBHOOK])), "api_key"),
    _Rule(
        re.compile(
            r"(?<![A-Za-z0-9])(?i:(?:aws)?[_.-]?secret[_.-]?access[_.-]?key(?:[_.-]?id)?)\\?[\"']?"
            r"[ \t]*(?::=|=>|[:=])[ \t]*\\?[\"']?(?P<s>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        "aws_secret",
    ),
    _Rule(
        re.compile(
            r"(?i:(?:proxy-)?authorization)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?"
            rf"(?P<scheme>(?i:bearer|token|basic))[ \t]+(?P<s>{_CREDENTIAL})"
        ),
        _authorization_kind,
    ),
    _Rule(
        re.compile(
            r"(?<![A-Za-z0-9_-])(?i:bearer)[ \t]+(?=[A-Za-z._~+/-]*[0-9])(?=[A-Za-z0-9._~+/-]{12})"
            rf"(?P<s>{_CREDENTIAL})"
        ),
        "bearer_token",
    ),
    _Rule(_KEY_VALUE, _labelled_kind, _accept_labelled, _VALUE_GROUPS),
    _Rule(_CLI_FLAG, _labelled_kind, _accept_labelled, _VALUE_GROUPS),
    _Rule(_XML_ELEMENT, _labelled_kind),
    _Rule(
        re.compile(
            r"(?<![0-9A-Za-z_])(?<![0-9][ .-])"
            r"(?:[0-9]{13,19}|[0-9]{4}(?P<sep>[ -])[0-9]{3,6}(?:(?P=sep)[0-9]{3,6}){1,3})"
            r"(?![0-9A-Za-z_])(?![ .-][0-9])"
        ),
        "payment_card",
        _is_card,
    ),
)


_MAX_PASSES: Final = 4


def redact(text: str) -> Redaction:
    """Replace every secret in ``text`` with ``[REDACTED:<kind>]``; all other text is kept exactly.

    A pass that found something is followed by another: a rule's match that was judged harmless (say
    ``/etc/passwd: …``) hides what it spans from that rule, and a later rule may have changed that span.
    Repeating until a pass finds nothing makes the result a fixed point, so redacting it again is a no-op.
    Text without secrets costs one pass.
    """
    found: Counter[str] = Counter()
    for _ in range(_MAX_PASSES):
        before = sum(found.values())
        text = _redact_private_keys(text, found)
        for rule in _RULES:
            text = rule.apply(text, found)
        if sum(found.values()) == before:
            break
    return Redaction(text=text, kinds=tuple(sorted(found)), count=sum(found.values()))


def redact_value(value: object) -> tuple[object, set[str], int]:
    """Redact JSON-like metadata: strings anywhere (keys too), whole values of keys that name a secret.

    Returns the new value (dicts, lists and tuples are copied), the kinds found and the replacement count.
    Booleans and ``None`` are kept even under a secret key (``{"secret": true}`` is a flag, not a secret).
    """
    if isinstance(value, str):
        result = redact(value)
        return result.text, set(result.kinds), result.count
    if isinstance(value, int) and not isinstance(value, bool):
        result = redact(str(value))  # a card number stored as a number
        return (result.text if result.found else value), set(result.kinds), result.count
    if isinstance(value, list | tuple):
        items: list[object] = []
        kinds: set[str] = set()
        count = 0
        for item in value:
            new, item_kinds, item_count = redact_value(item)
            items.append(new)
            kinds |= item_kinds
            count += item_count
        return (tuple(items) if isinstance(value, tuple) else items), kinds, count
    if isinstance(value, dict):
        return _redact_mapping(value)
    return value, set(), 0


def _redact_mapping(mapping: dict[object, object]) -> tuple[object, set[str], int]:
    out: dict[object, object] = {}
    kinds: set[str] = set()
    count = 0
    for key, item in mapping.items():
        new_key, key_kinds, key_count = redact_value(key)
        if isinstance(key, str) and _names_secret(key):
            new, item_kinds, item_count = _redact_secret_field(key, item)
        else:
            new, item_kinds, item_count = redact_value(item)
        out[new_key] = new
        kinds |= key_kinds | item_kinds
        count += key_count + item_count
    return out, kinds, count


def _redact_secret_field(key: str, value: object) -> tuple[object, set[str], int]:
    """Replace a secret-named key's scalar value whole, named by what it holds or else by the key."""
    if isinstance(value, str):
        if not value.strip() or _MARKER.fullmatch(value) or _PLACEHOLDER.fullmatch(value):
            return value, set(), 0
        kinds = redact(value).kinds
    elif isinstance(value, int | float) and not isinstance(value, bool):
        kinds = ()
    else:
        return redact_value(value)
    kind = kinds[0] if len(kinds) == 1 else _kind_for_key(key)
    return marker(kind), {kind}, 1
