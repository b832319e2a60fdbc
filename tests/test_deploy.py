"""What ships for operators: the Dockerfile's essentials (no Docker engine runs here) and the Kubernetes
manifests, validated against the Kubernetes API schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent_memory.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31"
MANIFESTS = sorted(path for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")
# applied instead of another manifest, not with it: the ExternalSecret makes the Secret the template makes
ALTERNATIVES = {"externalsecret.yaml": "secret.example.yaml"}
# custom resources: kubernetes-validate knows only the Kubernetes API's own kinds; checked by hand below
CUSTOM_API_GROUPS = ("external-secrets.io/",)


def _stages(dockerfile: str) -> list[str]:
    """The Dockerfile's stages, each from its FROM line on (line continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    return [part for part in re.split(r"(?m)^(?=FROM )", text) if part.startswith("FROM ")]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    """Built in one stage, run from a slim one as an unprivileged user, serving HTTP with a health check."""
    stages = _stages((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert len(stages) >= 2
    final = stages[-1]
    assert "slim" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    user = re.search(r"(?m)^USER (\S+)", final)
    assert user is not None
    assert user[1].split(":")[0] not in {"0", "root"}
    assert re.search(r"(?m)^EXPOSE 8765\b", final)
    assert re.search(r"(?m)^HEALTHCHECK .*?/healthz", final)
    assert re.search(r'(?m)^ENTRYPOINT \["agent-memory"\]', final)
    assert re.search(r'(?m)^CMD \["serve", "--http"\]', final)
    assert "COPY --from=build" in final
    for tool in ("pip install", "apt-get install", "uv sync", "gcc"):
        assert tool not in final, f"the runtime stage runs {tool!r}"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    """Each document validates (strictly: no unknown fields) against the Kubernetes API schemas (custom
    resources are checked by their own tests)."""
    for document in _documents(path):
        if document["apiVersion"].startswith(CUSTOM_API_GROUPS):
            continue
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest() -> None:
    """kustomization.yaml lists every manifest but the alternatives to one it lists."""
    kustomization = _documents(KUBERNETES / "kustomization.yaml")[0]
    assert set(ALTERNATIVES.values()) <= set(kustomization["resources"])
    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in MANIFESTS if path.name not in ALTERNATIVES
    )


def test_the_external_secret_makes_the_secret_the_template_makes() -> None:
    """The ExternalSecret (External Secrets Operator v1) fills a Secret of the template's name with exactly the
    template's keys, from a ClusterSecretStore, and every key the pods read as a file is among them."""
    external = _documents(KUBERNETES / "externalsecret.yaml")[0]
    template = _documents(KUBERNETES / "secret.example.yaml")[0]
    assert (external["apiVersion"], external["kind"]) == ("external-secrets.io/v1", "ExternalSecret")
    spec = external["spec"]
    assert set(spec) <= {"refreshInterval", "secretStoreRef", "target", "data"}
    assert spec["secretStoreRef"]["kind"] == "ClusterSecretStore"
    assert spec["secretStoreRef"]["name"]
    assert spec["target"]["name"] == template["metadata"]["name"] == external["metadata"]["name"]
    assert spec["target"]["creationPolicy"] == "Owner"
    keys = [item["secretKey"] for item in spec["data"]]
    assert sorted(keys) == sorted(template["stringData"])
    for item in spec["data"]:
        assert set(item) == {"secretKey", "remoteRef"}
        assert set(item["remoteRef"]) == {"key", "property"}
        assert item["remoteRef"]["property"] == item["secretKey"]
    deployment = (KUBERNETES / "deployment.yaml").read_text(encoding="utf-8")
    mounted = set(re.findall(r"/etc/agent-memory/secrets/(\w+)", deployment))
    assert mounted
    assert mounted <= set(keys)


def test_the_deployment_rolls_safely_and_shuts_down_gracefully() -> None:
    """Two or more replicas, no unavailable pod during a rollout, probes on /readyz and /healthz, a preStop
    pause inside a grace period longer than the server's own, non-root, limits set."""
    deployment = _documents(KUBERNETES / "deployment.yaml")[0]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "preStop" in container["lifecycle"]
    assert pod["terminationGracePeriodSeconds"] > 10  # the server's graceful shutdown takes up to 10 s
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])


def test_configured_variables_are_settings() -> None:
    """Every AGENT_MEMORY_* variable the manifests set is a real setting (or its _FILE twin)."""
    names = {f"AGENT_MEMORY_{field.upper()}" for field in Settings.model_fields}
    used: set[str] = set()
    for path in MANIFESTS:
        used.update(re.findall(r"\b(AGENT_MEMORY_[A-Z_]+)\b", path.read_text(encoding="utf-8")))
    assert used
    unknown = {name for name in used if name.removesuffix("_FILE") not in names}
    assert not unknown
