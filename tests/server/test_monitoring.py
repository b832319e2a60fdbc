"""The dashboard and the alert rules use only metrics the server exports, and every alert has a runbook entry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from agent_memory.settings import Settings
from agent_memory.store.database import Database
from tests.server.test_http import http_client

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "agent-memory.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRIC = re.compile(r"\b((?:agent_memory|process)_[a-z_]+)\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _expressions() -> list[str]:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [rule["expr"] for rule in rules] + [target["expr"] for panel in panels for target in panel["targets"]]


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


async def test_every_metric_used_is_exported(db: Database, settings: Settings) -> None:
    async with http_client(db, settings.model_copy(update={"auth": "none"}), None) as http:
        text = (await http.get("/metrics")).text
    exported = {_family(name) for name in re.findall(r"(?m)^# TYPE (\S+) ", text)}
    used = {_family(name) for expression in _expressions() for name in METRIC.findall(expression)}
    assert len(used) >= 8
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert re.search(r"(?m)^agent_memory_database_up 1\.0$", text)


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8").lower()
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            assert f"## {rule['alert'].lower()}" in runbook, rule["alert"]
            assert rule["annotations"]["runbook"].endswith(f"#{rule['alert'].lower()}")
