"""Secrets never reach disk: after `remember`, the raw value of each kind is in no table at all."""

from __future__ import annotations

import pytest
from mcp import Client

from agent_memory.store.database import Database
from tests.helpers import call, database_text

pytestmark = pytest.mark.anyio

# Built by concatenation so that secret scanners do not flag this file.
SECRETS = {
    "openai": ("api_key", "sk-proj-" + "T3BlbkFJ" + "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"),
    "anthropic": ("api_key", "sk-ant-api03-" + "Xy9" * 20 + "AA"),
    "aws": ("api_key", "AKIA" + "IOSFODNN7EXAMPLE"),
    "github": ("api_key", "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a"),
    "stripe": ("api_key", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    "slack": ("api_key", "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    "google": ("api_key", "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    "bearer": ("bearer_token", "Bearer " + "mF_9.B5f-4.1JqM" + "z8Kq2r7"),
    "jwt": (
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    "private_key": (
        "private_key",
        "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq98s9z8xMmV2Q3Yk\n-----END RSA " + "PRIVATE KEY-----",
    ),
    "password": ("password", "password=" + "Tr0ub4dor&3xyz"),
    "connection_string": ("connection_string", "postgres://app:" + "s3cr3tPassw0rd" + "@db.internal:5432/prod"),
}


RAW_PARTS = {  # the part of a sample that must vanish, where the sample has a label around it
    "bearer": "mF_9.B5f-4.1JqM" + "z8Kq2r7",
    "password": "Tr0ub4dor&3xyz",
    "connection_string": "s3cr3tPassw0rd",
    "private_key": "MIIEowIBAAKCAQEA7bq98s9z8xMmV2Q3Yk",
}


def _raw(name: str) -> str:
    return RAW_PARTS.get(name, SECRETS[name][1])


@pytest.mark.parametrize("name", sorted(SECRETS))
async def test_the_raw_secret_is_nowhere_in_the_database(client: Client, db: Database, name: str) -> None:
    """The secret is redacted from the text, metadata, decision fields and task notes; the event is marked
    secret; the reply names the kind but not the value; no table holds the raw value."""
    kind, value = SECRETS[name]
    raw = _raw(name)
    out = await call(
        client,
        "remember",
        events=[
            {"text": f"my credential is {value} please keep it", "metadata": {"note": value, "api_key": value}},
            {"text": "Rotate the credential.", "kind": "decision", "decision": {"rationale": f"it leaked: {value}"}},
            {"text": "rotation", "kind": "task_update", "task": {"title": "Rotate", "note": f"old one {value}"}},
        ],
    )
    first = out["events"][0]
    assert first["sensitivity"] == "secret"
    assert kind in first["redactions"]
    assert raw not in str(out)
    assert all(e["sensitivity"] == "secret" for e in out["events"])
    assert raw not in await database_text(db)


async def test_six_kinds_in_one_message(client: Client, db: Database) -> None:
    """A message with secrets of six kinds: every one is redacted, every kind reported."""
    names = ["openai", "jwt", "private_key", "password", "connection_string", "bearer"]
    text = "\n".join(f"{n}: {SECRETS[n][1]}" for n in names)
    receipt = (await call(client, "remember", text=text))["events"][0]
    assert set(receipt["redactions"]) >= {SECRETS[n][0] for n in names}
    stored = await database_text(db)
    for name in names:
        assert _raw(name) not in stored, name


async def test_labels_tags_and_handoff_files_are_redacted_too(client: Client, db: Database) -> None:
    """A secret in the actor, a tag or a handoff's required files is redacted like one in the text."""
    key = "sk-proj-" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6"
    url = "https://bob:" + "s3cretPW9zz" + "@files.example/x"
    receipt = (await call(client, "remember", text="deploy done", tags=[key], actor=f"admin password={key}"))["events"][
        0
    ]
    assert receipt["sensitivity"] == "secret"
    await call(client, "handoff_packet", to_agent="b", task="fetch the files", required_files=[url])
    stored = await database_text(db)
    assert key not in stored
    assert "s3cretPW9zz" not in stored
