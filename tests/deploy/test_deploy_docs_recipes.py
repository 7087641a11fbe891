"""The recipes docs/deployment.md gives operators work against the rendered manifests:
the ExternalSecret fills exactly the Secret keys the pods read, and the backfill Job
recipe (run here with the cluster calls replaced by files) yields the CronJob's Job
running `churn backfill` with arguments the command accepts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import DOCS, SECRET_NAME, containers, one, pod_templates, tool

Docs = list[dict[str, Any]]


def _blocks(language: str) -> list[str]:
    """The fenced code blocks of docs/deployment.md in `language` (indentation removed)."""
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```", DOCS.read_text(), flags=re.M | re.S)
    return ["\n".join(line[len(indent):] for line in body.splitlines()) for indent, body in found]


def test_the_external_secret_fills_every_secret_key_the_pods_read(rendered: dict[str, Docs]) -> None:
    (block,) = [block for block in _blocks("yaml") if "kind: ExternalSecret" in block]
    doc = yaml.safe_load(block)
    assert doc["apiVersion"] == "external-secrets.io/v1"
    assert doc["spec"]["target"]["name"] == SECRET_NAME
    assert doc["metadata"]["namespace"] == one(rendered["production"], "Namespace", "churn")["metadata"]["name"]
    assert doc["spec"]["secretStoreRef"]["kind"] in ("SecretStore", "ClusterSecretStore")
    provided = {item["secretKey"] for item in doc["spec"]["data"]}
    for item in doc["spec"]["data"]:
        assert set(item["remoteRef"]) == {"key", "property"}
    read = {
        var["valueFrom"]["secretKeyRef"]["key"]
        for _, template in pod_templates(rendered["production"])
        for c in containers(template)
        for var in c.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {}) and var["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
    }
    assert provided == read


def test_the_backfill_recipe_makes_the_scoring_job_run_churn_backfill(
    rendered: dict[str, Docs], tmp_path: Path
) -> None:
    (recipe,) = [block for block in _blocks("bash") if "churn backfill" in block or '"backfill"' in block]
    create = 'kubectl -n "$NS" create job --from=cronjob/churn-scoring "$JOB" --dry-run=client -o yaml'
    assert create in recipe and "| kubectl apply -f -" in recipe
    # What `kubectl create job --from=cronjob/...` prints: the CronJob's jobTemplate as a Job.
    cron = one(rendered["production"], "CronJob", "churn-scoring")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "placeholder", "namespace": cron["metadata"]["namespace"],
                     "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
        "spec": cron["spec"]["jobTemplate"]["spec"],
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    script = recipe.split("kubectl -n \"$NS\" get job")[0]  # stop before the commands that watch the cluster
    script = script.replace(create, "cat job.yaml").replace("| kubectl apply -f -", "> applied.yaml")
    env = {"PATH": os.pathsep.join([str(Path(tool("kubectl")).parent), os.environ["PATH"]]), "KUBECONFIG": "/dev/null"}

    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    applied = yaml.safe_load((tmp_path / "applied.yaml").read_text())
    (container,) = applied["spec"]["template"]["spec"]["containers"]
    dates = re.search(r"FROM=(\S+) TO=(\S+)", recipe).groups()  # type: ignore[union-attr]
    assert container["args"] == ["churn", "backfill", "--from", dates[0], "--to", dates[1]]
    assert container["name"] == "score", "the podFailurePolicy's exit-code rule names this container"
    original = cron["spec"]["jobTemplate"]["spec"]
    assert applied["spec"]["completions"] == original["completions"], "same shards as the nightly run"
    assert container["env"] == original["template"]["spec"]["containers"][0]["env"]

    from churn_jobs.cli import backfill

    backfill.make_context("backfill", container["args"][2:])  # the options exist and the required ones are given
