"""The overlays hold placeholders for what the repository must not know (AWS account,
region, risk bucket, IAM role name, image); CD sets them from repository variables.
Replaying CD's own steps on a copy of k8s/ leaves none in the rendered manifests, and
CD's guard refuses a render that still holds one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import K8S, OVERLAYS, WORKFLOWS, one, render, workflow

CD = workflow(WORKFLOWS / "cd.yaml")
PLACEHOLDERS = CD["env"]["PLACEHOLDERS"]
# What the repository/environment variables would hold in a real account.
VARIABLES = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "us-east-2",
    "RISK_BUCKET": "acme-churn-risk",
    "IRSA_ROLE_NAME": "churn-deployed",
}
SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE = f"{VARIABLES['AWS_ACCOUNT_ID']}.dkr.ecr.{VARIABLES['AWS_REGION']}.amazonaws.com/churn:{SHA}"


def _step(job: str, needle: str) -> dict[str, Any]:
    (step,) = [s for s in CD["jobs"][job]["steps"] if needle in s.get("run", "")]
    return step


def _set_variables(overlay_dir: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """CD's "set the environment's values" step, run by bash as the runner runs it."""
    step = _step(f"deploy-{overlay_dir.name}", "deploy.env")
    env = {"PATH": os.environ["PATH"], "AWS_REGION": variables["AWS_REGION"]}
    for name, expression in step["env"].items():
        (variable,) = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}", expression).groups()  # type: ignore[union-attr]
        env[name] = variables[variable]
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=overlay_dir, env=env, capture_output=True, text=True)


def _set_image(overlay_dir: Path) -> None:
    """What `kustomize edit set image churn=IMAGE` does to the overlay (no kustomize binary here)."""
    path = overlay_dir / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == "churn"]
    name, tag = IMAGE.rsplit(":", 1)
    entry.update(newName=name, newTag=tag)
    path.write_text(yaml.safe_dump(kustomization))


def _guard(rendered: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """CD's "refuse a render that still holds a placeholder" step on `rendered`."""
    (tmp_path / "rendered.yaml").write_text(rendered)
    (tmp_path / "monitoring.yaml").write_text(yaml.safe_dump_all(render(K8S / "monitoring")))
    step = _step("deploy-production", "$PLACEHOLDERS")
    env = {"PATH": os.environ["PATH"], "PLACEHOLDERS": PLACEHOLDERS}
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.fixture
def deployed_tree(tmp_path: Path) -> Path:
    """A copy of k8s/ after CD's steps for both overlays."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    for overlay in OVERLAYS:
        result = _set_variables(tree / "overlays" / overlay, VARIABLES)
        assert result.returncode == 0, result.stderr
        _set_image(tree / "overlays" / overlay)
    return tree


def test_the_committed_overlays_hold_every_kind_of_placeholder(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Guard: what PLACEHOLDERS must catch really is in the committed manifests."""
    for overlay in OVERLAYS:
        text = yaml.safe_dump_all(rendered[overlay])
        for placeholder in ("000000000000", "placeholder-", "0" * 40):
            assert placeholder in text and re.search(PLACEHOLDERS, placeholder), placeholder


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cd_leaves_no_placeholder_in_the_rendered_overlay(deployed_tree: Path, overlay: str, tmp_path: Path) -> None:
    docs = render(deployed_tree / "overlays" / overlay)
    text = yaml.safe_dump_all(docs)

    assert not re.findall(PLACEHOLDERS, text)
    arn = one(docs, "ServiceAccount", "churn")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert arn == f"arn:aws:iam::{VARIABLES['AWS_ACCOUNT_ID']}:role/{VARIABLES['IRSA_ROLE_NAME']}"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"]["RISK_TABLE_URI"] == f"s3://{VARIABLES['RISK_BUCKET']}/churn/risk"
    assert config["data"]["AWS_REGION"] == VARIABLES["AWS_REGION"]
    assert not [d for d in docs if d["metadata"]["name"] == "churn-deploy-vars"], "local-config stays out"
    assert _guard(text, tmp_path).returncode == 0


def test_cd_refuses_the_committed_render(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    result = _guard(yaml.safe_dump_all(rendered["production"]), tmp_path)

    assert result.returncode != 0 and "000000000000" in result.stdout


def test_cd_stops_when_a_repository_variable_is_missing(tmp_path: Path) -> None:
    overlay = tmp_path / "production"
    shutil.copytree(K8S / "overlays" / "production", overlay)

    result = _set_variables(overlay, {**VARIABLES, "RISK_BUCKET": ""})

    assert result.returncode != 0 and "RISK_BUCKET" in result.stdout + result.stderr


def test_cd_applies_exactly_the_render_it_checked() -> None:
    for job in ("deploy-staging", "deploy-production"):
        names = [s.get("run", "") for s in CD["jobs"][job]["steps"]]
        check = next(i for i, run in enumerate(names) if "$PLACEHOLDERS" in run)
        apply = next(i for i, run in enumerate(names) if "kubectl apply" in run)
        assert check < apply
        assert "kubectl apply -f rendered.yaml" in names[apply] and "kubectl apply -f monitoring.yaml" in names[apply]
        assert "-k" not in names[apply].split()
