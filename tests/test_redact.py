"""Secrets are replaced by ``[REDACTED:<kind>]`` before anything is stored; personal data is detected.

Every credential below is fake and built by concatenation, so secret scanners do not flag this file.
"""

from __future__ import annotations

import time

import pytest

from agent_memory.pii import contains_pii
from agent_memory.redact import KINDS, Redaction, marker, redact, redact_value


def fake(length: int, alphabet: str = "aB3xK9mQ7pL2zR5tW8") -> str:
    """A deterministic fake credential body of ``length`` characters drawn from ``alphabet``."""
    return (alphabet * (length // len(alphabet) + 1))[:length]


HEX = "0123456789abcdef"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
JWT = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

PROVIDER_KEYS = {
    "openai legacy": "sk-" + fake(48),
    "openai project": "sk-proj-" + fake(60, "aB3_xK9-mQ7"),
    "anthropic": "sk-ant-api03-" + fake(93, "aB3_xK9-mQ7") + "AA",
    "stripe live": "sk_live_" + fake(24),
    "stripe restricted": "rk_live_" + fake(24),
    "stripe test": "sk_test_" + fake(24),
    "aws access key id": "AKIA" + "IOSFODNN7EXAMPLE",
    "aws session key id": "ASIA" + "Y34FZKBOKMUTVV7A",
    "github classic": "ghp_" + fake(36),
    "github oauth": "gho_" + fake(36),
    "github user-to-server": "ghu_" + fake(36),
    "github server-to-server": "ghs_" + fake(36),
    "github refresh": "ghr_" + fake(36),
    "github fine-grained": "github_pat_" + fake(22) + "_" + fake(59),
    "gitlab": "glpat-" + fake(20),
    "slack bot": "xoxb-" + "1234567890-1234567890123-" + fake(24),
    "slack user": "xoxp-" + "1234567890-1234567890123-" + fake(32),
    "google api key": "AIza" + fake(35),
    "hugging face": "hf_" + fake(34, "aBcDeFgHiJkLmN"),
    "sendgrid": "SG." + fake(22) + "." + fake(43),
    "twilio api key sid": "SK" + fake(32, HEX),
    "twilio account sid": "AC" + fake(32, HEX),
    "npm": "npm_" + fake(36),
    "pypi": "pypi-" + "AgEIcHlwaS5vcmc" + fake(60),
    "groq": "gsk_" + fake(52),
}


def assert_redacted(text: str, secret: str, kind: str) -> Redaction:
    """The secret is gone, only ``kind`` is reported, and redacting again changes nothing."""
    result = redact(text)
    assert secret not in result.text
    assert marker(kind) in result.text
    assert result.kinds == (kind,)
    assert result.found
    again = redact(result.text)
    assert again.text == result.text
    assert not again.found
    return result


@pytest.mark.parametrize(("provider", "key"), PROVIDER_KEYS.items(), ids=list(PROVIDER_KEYS))
@pytest.mark.parametrize("template", ["{}", "export TOKEN_VALUE={} # set", 'client = Client("{}")'])
def test_provider_api_keys_are_redacted(provider: str, key: str, template: str) -> None:
    """A key with a known provider prefix becomes ``[REDACTED:api_key]`` wherever it appears."""
    text = template.format(key)
    result = assert_redacted(text, key, "api_key")
    assert result.text == template.format(marker("api_key")), provider


@pytest.mark.parametrize(
    "text",
    [
        f"aws_secret_access_key = {AWS_SECRET}",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'{{"SecretAccessKey": "{AWS_SECRET}", "Expiration": "2025-01-01"}}',
        f"aws_secret_access_key: '{AWS_SECRET}'",
    ],
)
def test_labelled_aws_secret_access_keys_are_redacted(text: str) -> None:
    """A 40-character value labelled as an AWS secret access key is reported as ``aws_secret``."""
    assert_redacted(text, AWS_SECRET, "aws_secret")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer xyz", "Authorization: Bearer [REDACTED:bearer_token]"),
        (
            'curl -H "Authorization: Bearer ' + fake(40) + '" https://api.example.com',
            'curl -H "Authorization: Bearer [REDACTED:bearer_token]" https://api.example.com',
        ),
        (
            '{"authorization": "Bearer ' + fake(30) + '"}',
            '{"authorization": "Bearer [REDACTED:bearer_token]"}',
        ),
        ("Authorization: token " + fake(40), "Authorization: token [REDACTED:bearer_token]"),
        ("send it with Bearer " + fake(32) + ".", "send it with Bearer [REDACTED:bearer_token]."),
    ],
)
def test_bearer_tokens_are_redacted(text: str, expected: str) -> None:
    """``Authorization`` headers lose their credential; a bare ``Bearer`` needs a token-like value."""
    assert redact(text).text == expected
    assert redact(text).kinds == ("bearer_token",)


def test_basic_authorization_is_a_password() -> None:
    """``Authorization: Basic`` carries base64 of user:password, so it is reported as a password."""
    result = redact("Authorization: Basic " + "dXNlcjpodW50ZXIy")
    assert result.text == "Authorization: Basic [REDACTED:password]"
    assert result.kinds == ("password",)


@pytest.mark.parametrize("template", ["{}", "token={}&x=1", "Authorization: Bearer {}", '{{"id_token": "{}"}}'])
def test_jwts_are_redacted(template: str) -> None:
    """Three base64url segments starting with ``eyJ`` are a JWT, whatever label surrounds them."""
    assert_redacted(template.format(JWT), JWT, "jwt")


PEM_BODY = "MIIEowIBAAKCAQEA" + fake(64, "ABCDEFabcdef0123456789+/") + "\n" + fake(40, "QRSTqrst4567+/") + "=="


@pytest.mark.parametrize(
    "label",
    ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"],
)
def test_pem_private_keys_are_redacted_through_the_end_line(label: str) -> None:
    """A multi-line PEM private key, BEGIN through END, becomes one marker; the text around it stays."""
    text = f"key follows:\n-----BEGIN {label}-----\n{PEM_BODY}\n-----END {label}-----\ndone"
    result = assert_redacted(text, PEM_BODY, "private_key")
    assert result.text == "key follows:\n[REDACTED:private_key]\ndone"


def test_encrypted_pem_with_headers_and_pgp_blocks_are_redacted() -> None:
    """Legacy encrypted PEM (Proc-Type/DEK-Info headers) and PGP private key blocks are private keys."""
    legacy = (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C3D\n\n"
        f"{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
    )
    pgp = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{PEM_BODY}\n-----END PGP PRIVATE KEY BLOCK-----"
    result = redact(f"{legacy}\n{pgp}")
    assert result.text == "[REDACTED:private_key]\n[REDACTED:private_key]"
    assert result.count == 2


def test_truncated_and_json_escaped_private_keys_are_redacted() -> None:
    """A key cut off before its END line loses its base64 lines; a JSON-escaped key is found too."""
    truncated = redact(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n[output truncated]")
    assert truncated.text == "[REDACTED:private_key]\n[output truncated]"
    escaped_body = PEM_BODY.replace("\n", "\\n")
    escaped = f'{{"key": "-----BEGIN PRIVATE KEY-----\\n{escaped_body}\\n-----END PRIVATE KEY-----\\n"}}'
    assert redact(escaped).text == '{"key": "[REDACTED:private_key]\\n"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:hunter2@db:5432/x", "postgres://app:[REDACTED:connection_string]@db:5432/x"),
        (
            "postgresql://app:p%40ss@db/x?sslmode=require",
            "postgresql://app:[REDACTED:connection_string]@db/x?sslmode=require",
        ),
        (
            "mysql://root:S3cret!@127.0.0.1:3306/shop",
            "mysql://root:[REDACTED:connection_string]@127.0.0.1:3306/shop",
        ),
        (
            "mongodb+srv://admin:Zx9-w!q@cluster0.ab1cd.mongodb.net/app",
            "mongodb+srv://admin:[REDACTED:connection_string]@cluster0.ab1cd.mongodb.net/app",
        ),
        (
            "REDIS_URL=redis://:s3cret@localhost:6379/0",
            "REDIS_URL=redis://:[REDACTED:connection_string]@localhost:6379/0",
        ),
        ("amqp://guest:guestpw@rabbit:5672/", "amqp://guest:[REDACTED:connection_string]@rabbit:5672/"),
        (
            "git clone https://bob:tok3n@example.com/r.git",
            "git clone https://bob:[REDACTED:connection_string]@example.com/r.git",
        ),
    ],
)
def test_connection_strings_keep_everything_but_the_password(text: str, expected: str) -> None:
    """Only the password of ``scheme://user:password@host`` is replaced; scheme, user and host stay."""
    result = redact(text)
    assert result.text == expected
    assert result.kinds == ("connection_string",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2", "password=[REDACTED:password]"),
        ("PASSWORD='hunter 2'", "PASSWORD='[REDACTED:password]'"),
        ('DB_PASSWORD="hunter2" ./run', 'DB_PASSWORD="[REDACTED:password]" ./run'),
        ("passwd: hunter2", "passwd: [REDACTED:password]"),
        ("pwd=hunter2", "pwd=[REDACTED:password]"),
        ("SMTP_PASS=hunter2", "SMTP_PASS=[REDACTED:password]"),
        ("secret: s3cr3t-value", "secret: [REDACTED:password]"),
        ("client_secret=abc123", "client_secret=[REDACTED:password]"),
        ("access_token=abc123&state=xyz", "access_token=[REDACTED:password]&state=xyz"),
        ("GITHUB_TOKEN=abc123", "GITHUB_TOKEN=[REDACTED:password]"),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "[REDACTED:password]", "user": "bob"}'),
        ('{"clientSecret":"abc123"}', '{"clientSecret":"[REDACTED:password]"}'),
        ('{\\"password\\": \\"hunter2\\"}', '{\\"password\\": \\"[REDACTED:password]\\"}'),
        ("api_key=abc123", "api_key=[REDACTED:api_key]"),
        ('apiKey: "abc123"', 'apiKey: "[REDACTED:api_key]"'),
        ("X-Api-Key: abc123", "X-Api-Key: [REDACTED:api_key]"),
        ("apikey=abc123", "apikey=[REDACTED:api_key]"),
        ('password: str = "hunter2"', 'password: str = "[REDACTED:password]"'),
        ("password := 'hunter2'", "password := '[REDACTED:password]'"),
        ("'password' => 'hunter2'", "'password' => '[REDACTED:password]'"),
        ("mysql --password hunter2 -h db", "mysql --password [REDACTED:password] -h db"),
        ("<password>hunter2</password>", "<password>[REDACTED:password]</password>"),
        (
            "host=db user=app password=hunter2 dbname=x",
            "host=db user=app password=[REDACTED:password] dbname=x",
        ),
        (
            "jdbc:postgresql://db/x?user=app&password=hunter2",
            "jdbc:postgresql://db/x?user=app&password=[REDACTED:password]",
        ),
        ("Password: 123456", "Password: [REDACTED:password]"),
    ],
)
def test_labelled_values_are_redacted_in_every_common_form(text: str, expected: str) -> None:
    """key=value, key: value, JSON, escaped JSON, code, CLI flags and XML lose the value, keep the key."""
    assert redact(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "password = getpass()",
        "token = os.environ['GITHUB_TOKEN']",
        "api_key = settings.openai_api_key",
        "client = Client(api_key=api_key, password=password)",
        "token: str | None = None",
        'password: "<your password here>"',
        "password=${DB_PASSWORD}",
        "password: ********",
        "PWD=/home/me/project OLDPWD=/tmp",
        '{"secret": true, "token": null, "password": ""}',
        "eos_token: </s> pad_token: [PAD]",
        '{"nextToken": "AAEAAWJj", "pageToken": "CAoQAA"}',
        "if password == 'x': pass",
    ],
)
def test_labelled_placeholders_and_code_are_left_alone(text: str) -> None:
    """References, calls, type hints, placeholders, paths and pagination tokens are not secrets."""
    result = redact(text)
    assert result.text == text
    assert not result.found


@pytest.mark.parametrize(
    "text",
    [
        "The token budget is 4000 and the password policy needs 12 characters.",
        "Use bearer authentication; the bearer token is sent in a header.",
        "Tokens: 1234 in, 567 out. max_tokens=4096, token_count: 12",
        "request 123e4567-e89b-12d3-a456-426614174000 failed",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b on main",
        "see /etc/passwd and src/agent_memory/secret_store.py: line 4",
        "cat: /etc/passwd: Permission denied",
        "spinner class sk-fading-circle-animation-wrapper",
        "ghp_short and AKIA123 and hf_hub_download and AIzaShort",
        "xoxb- is the Slack bot prefix; sk- is OpenAI's",
        "eyJhbGciOiJIUzI1NiJ9 is a JWT header alone",
        "https://example.com:8443/path and user@example.com",
        "timestamp 1700000000000, id 4111111111111112, build 20240115123456",
        "Call 555-123-4567 or +33 6 12 34 56 78 on 2024-01-15, v1.2.3.",
        "A B C password policy: strict",
    ],
)
def test_ordinary_text_and_look_alikes_are_untouched(text: str) -> None:
    """Prose, UUIDs, git SHAs, paths, prefixes without a body and numbers that are not cards stay."""
    result = redact(text)
    assert result.text == text
    assert not result.found
    assert result.kinds == ()


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "3782 822463 10005",
        "2223003122003222",
    ],
)
def test_luhn_valid_card_numbers_are_redacted(card: str) -> None:
    """Visa, Mastercard and Amex numbers, plain or grouped, that pass Luhn are ``payment_card``."""
    result = assert_redacted(f"paid with {card}, thanks", card, "payment_card")
    assert result.text == "paid with [REDACTED:payment_card], thanks"


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",
        "1234567812345670",
        "4111 1111 1111 11111 1",
        "378282246310005 1",
        "41111111111111110",
    ],
)
def test_card_look_alikes_are_not_redacted(number: str) -> None:
    """Luhn failures, non-card first digits, odd lengths and longer digit runs are kept."""
    assert redact(number).text == number


def test_multiple_secrets_are_counted_and_kinds_sorted_and_unique() -> None:
    """Each replacement counts once; kinds are reported sorted and without repeats."""
    text = (
        f"DATABASE_URL=postgres://app:pw1@db/x\nOPENAI_API_KEY={PROVIDER_KEYS['openai legacy']}\n"
        f"ANTHROPIC_API_KEY={PROVIDER_KEYS['anthropic']}\nid_token={JWT}\npassword=hunter2\n"
    )
    result = redact(text)
    assert result.kinds == ("api_key", "connection_string", "jwt", "password")
    assert result.count == 5
    assert result.text == (
        "DATABASE_URL=postgres://app:[REDACTED:connection_string]@db/x\nOPENAI_API_KEY=[REDACTED:api_key]\n"
        "ANTHROPIC_API_KEY=[REDACTED:api_key]\nid_token=[REDACTED:jwt]\npassword=[REDACTED:password]\n"
    )


def test_text_without_secrets_is_returned_unchanged() -> None:
    """With nothing to redact, the text comes back identical and ``found`` is false."""
    text = "Ünïcödé, tabs\tand\r\nnewlines stay exactly as they were. 😀"
    assert redact(text) == Redaction(text=text, kinds=(), count=0)
    assert not redact(text).found


def test_redaction_is_idempotent_on_every_example() -> None:
    """Redacting already redacted text changes nothing and finds nothing."""
    samples = [
        *PROVIDER_KEYS.values(),
        JWT,
        f"aws_secret_access_key={AWS_SECRET}",
        "password=x1 token: y2",
        "token: Foo = bar",
        "secret: Optional[str] = 'abc'",
        '{"password": "Bearer ' + JWT + '"}',
    ]
    first = redact("\n".join(samples)).text
    assert redact(first) == Redaction(text=first, kinds=(), count=0)
    for kind in KINDS:
        assert redact(f"x={marker(kind)} '{marker(kind)}' {marker(kind)}").count == 0


def test_redact_value_walks_metadata_and_redacts_secret_named_keys() -> None:
    """Strings anywhere are redacted; values under secret-named keys are replaced whole; flags are kept."""
    metadata = {
        "tool": "http",
        "headers": {"Authorization": "Bearer xyz", "X-Api-Key": "abc", "Accept": "json"},
        "args": ["--url", "postgres://app:pw1@db/x", ("password=hunter2",)],
        "config": {"password": 123456, "secret": True, "token": None, "clientSecret": "s3"},
        "card": 4111111111111111,
        "limits": {"max_tokens": 4096, "token_budget": 1000},
        "nextToken": "AAE1",
    }
    value, kinds, count = redact_value(metadata)
    assert value == {
        "tool": "http",
        "headers": {
            "Authorization": "[REDACTED:bearer_token]",
            "X-Api-Key": "[REDACTED:api_key]",
            "Accept": "json",
        },
        "args": [
            "--url",
            "postgres://app:[REDACTED:connection_string]@db/x",
            ("password=[REDACTED:password]",),
        ],
        "config": {
            "password": "[REDACTED:password]",
            "secret": True,
            "token": None,
            "clientSecret": "[REDACTED:password]",
        },
        "card": "[REDACTED:payment_card]",
        "limits": {"max_tokens": 4096, "token_budget": 1000},
        "nextToken": "AAE1",
    }
    assert kinds == {"api_key", "bearer_token", "connection_string", "password", "payment_card"}
    assert count == 7
    assert redact_value(value) == (value, set(), 0)


def test_redact_value_names_a_secret_field_by_what_it_holds() -> None:
    """A recognisable secret under a secret key keeps its own kind; other values take the key's kind."""
    value, kinds, count = redact_value({"token": JWT, "aws_secret_access_key": "short", "private_key": "pem"})
    assert value == {
        "token": "[REDACTED:jwt]",
        "aws_secret_access_key": "[REDACTED:aws_secret]",
        "private_key": "[REDACTED:private_key]",
    }
    assert kinds == {"jwt", "aws_secret", "private_key"}
    assert count == 3


def test_redact_value_redacts_secrets_in_keys_and_passes_other_types_through() -> None:
    """A secret used as a dict key is redacted too; numbers, floats and None come back as they were."""
    key = PROVIDER_KEYS["github classic"]
    assert redact_value({key: 1}) == ({"[REDACTED:api_key]": 1}, {"api_key"}, 1)
    assert redact_value([1.5, None, 7, False]) == ([1.5, None, 7, False], set(), 0)


ADVERSARIAL = [
    "password=",
    "a_",
    "sk-",
    "eyJ",
    "eyJaaaaaaaa.",
    "-----BEGIN PRIVATE KEY-----\n",
    "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n",
    "postgres://u:",
    "x://",
    "4111 ",
    "4",
    "Bearer ",
    "bearer a",
    "Authorization: Bearer ",
    '"password": "',
    '\\"token\\": \\"',
    "+1 ",
    "a@",
    "a.",
    "<password>",
    "--token ",
    "AKIA",
    "DE89 ",
    "password=password=(",
    "x-api-key: str =",
    "'",
]


def test_a_megabyte_of_adversarial_text_is_handled_quickly() -> None:
    """1 MB made of long runs of each pattern's prefix finishes in seconds: no catastrophic backtracking."""
    block = 1_000_000 // len(ADVERSARIAL)
    text = "".join(unit * (block // len(unit)) for unit in ADVERSARIAL)
    started = time.perf_counter()
    redact(text)
    contains_pii(text)
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    "text",
    [
        "write to jane.doe+work@example.co.uk",
        "call me at +1 (415) 555-0132",
        "tel: +44 20 7946 0958",
        "+33 6 12 34 56 78",
        "+4915123456789",
        "(415) 555-0132",
        "415-555-0132",
        "06 12 34 56 78",
        "07700 900123",
        "020 7946 0958",
        "IBAN DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
    ],
)
def test_personal_data_is_detected(text: str) -> None:
    """E-mail addresses, phone numbers and IBANs make the text personal."""
    assert contains_pii(text)


@pytest.mark.parametrize(
    "text",
    [
        "released 2024-01-15 as v1.2.3 (build 20240115)",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "git@github.com:org/repo.git and icon@2x.png",
        "order 1234567890, ip 192.168.1.10, port 5432",
        "1+1 = 2 and version 3.11.7",
        "DE89 3704 0044 0532 0130 01",
        "the year 1999 and 2000-2024",
    ],
)
def test_ordinary_numbers_and_ids_are_not_personal(text: str) -> None:
    """Dates, versions, ids, IPs, scp-style git remotes and IBANs failing mod-97 are not personal data."""
    assert not contains_pii(text)
