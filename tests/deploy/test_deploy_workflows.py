"""GitHub Actions workflows: actionlint (with shellcheck on every `run:` script)
plus the structure the project relies on (triggers, OIDC, no keys, the steps)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import WORKFLOWS, run, tool, workflow

CI = WORKFLOWS / "ci.yaml"
CD = WORKFLOWS / "cd.yaml"


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def runs(job: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def uses(job: dict[str, Any]) -> list[str]:
    return [s["uses"] for s in steps(job) if "uses" in s]


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    found = [s for s in steps(job) if s.get("uses", "").startswith(action + "@")]
    assert found, f"no step uses {action}"
    return found[0]


@pytest.mark.parametrize("path", [CI, CD], ids=lambda p: p.name)
def test_actionlint_passes(path: Path) -> None:
    shellcheck = tool("shellcheck")  # actionlint runs it on every `run:` block
    proc = run([tool("actionlint"), "-shellcheck", shellcheck, "-no-color", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """Guard: actionlint really checks (an undefined job in `needs` and a bad expression fail)."""
    bad = tmp_path / ".github" / "workflows" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        CD.read_text()
        .replace("needs: ci\n", "needs: no-such-job\n", 1)
        .replace("${{ github.sha }}", "${{ github.shaa }}", 1)
    )
    proc = run([tool("actionlint"), "-no-color", str(bad)], check=False)
    assert proc.returncode != 0
    assert "no-such-job" in proc.stdout


@pytest.mark.parametrize("path", [CI, CD], ids=lambda p: p.name)
def test_actions_pinned_to_a_major_version_or_sha(path: Path) -> None:
    data = workflow(path)
    for job_id, job in data["jobs"].items():
        for ref in uses(job):
            if ref.startswith("./"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+|[0-9a-f]{40})", ref), f"{job_id}: {ref} is not pinned"


@pytest.mark.parametrize("path", [CI, CD], ids=lambda p: p.name)
def test_least_privilege_and_no_secrets_in_plain_text(path: Path) -> None:
    text = path.read_text()
    data = workflow(path)
    assert data["permissions"] == {"contents": "read"}, "default token permissions: read only"
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "an AWS access key id"
    assert "aws-access-key-id" not in text and "aws-secret-access-key" not in text, "long-lived AWS keys"
    assert "AWS_SECRET_ACCESS_KEY" not in text
    assert not re.search(r"(?i)(password|passwd|token|secret)\s*:\s*['\"]?[A-Za-z0-9/+=_-]{8,}", text), (
        "a credential written in the workflow"
    )
    assert not re.search(r"\d{12}\.dkr\.ecr", text), "registry/account ids come from variables"
    for job_id, job in data["jobs"].items():
        if job.get("permissions", {}).get("id-token") == "write":
            assert path == CD, f"{job_id}: only CD needs an OIDC token"


def test_ci_triggers_and_jobs() -> None:
    data = workflow(CI)
    on = data["on"]
    assert "pull_request" in on and "workflow_call" in on and "push" in on
    jobs = data["jobs"]

    lint = runs(jobs["lint"])
    assert re.search(r"^ruff check", lint, re.M)
    assert re.search(r"^mypy\b", lint, re.M)

    tests = jobs["tests"]
    assert "bash .ci/run" in runs(tests), "unit + integration tests run exactly as .ci/run does"
    assert "scripts/install-test-services.sh" in runs(tests)
    assert tests["timeout-minutes"] <= 90

    pipeline = runs(jobs["pipeline"])
    assert re.search(r"^dvc repro", pipeline, re.M)
    assert "DVC_NO_ANALYTICS" in data["env"]

    deploy = runs(jobs["deploy-files"])
    for needle in (
        "hadolint Dockerfile",
        "kubectl kustomize",
        "kubernetes-validate --strict",
        "promtool check rules",
        "promtool test rules",
        "pytest tests/deploy",
    ):
        assert needle in deploy, needle

    image = jobs["image"]
    build = step_using(image, "docker/build-push-action")
    assert build["with"]["push"] is False, "CI builds but never pushes"
    for cmd in ("train", "score", "serve"):
        assert cmd in runs(image)
    assert "--read-only" in runs(image)
    for job_id, job in jobs.items():
        assert job["runs-on"].startswith("ubuntu-"), job_id
        assert "timeout-minutes" in job, job_id


def test_cd_on_main_builds_pushes_and_deploys_with_oidc() -> None:
    data = workflow(CD)
    assert data["on"]["push"]["branches"] == ["main"]
    assert data["concurrency"]["cancel-in-progress"] is False, "never cancel a deployment half-way"
    jobs = data["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yaml", "deploy only what passed CI"

    build = jobs["build"]
    assert build["needs"] == "ci"
    assert build["permissions"]["id-token"] == "write"
    creds = step_using(build, "aws-actions/configure-aws-credentials")["with"]
    assert creds["role-to-assume"].startswith("${{ vars.")
    assert set(creds) <= {"role-to-assume", "role-session-name", "aws-region"}
    step_using(build, "aws-actions/amazon-ecr-login")
    push = step_using(build, "docker/build-push-action")["with"]
    assert push["push"] is True
    assert data["env"]["IMAGE"].endswith(":${{ github.sha }}") and push["tags"] == "${{ env.IMAGE }}"
    assert "PYTHON_IMAGE=" in push["build-args"], "CD pins the base image digest"

    order = {"deploy-staging": "build", "deploy-production": "deploy-staging"}
    for job_id, needs in order.items():
        job = jobs[job_id]
        assert job["needs"] == needs
        assert job["permissions"]["id-token"] == "write"
        assert job["environment"] in job_id
        overlay = job["env"]["OVERLAY"]
        assert overlay == f"k8s/overlays/{job['environment']}"
        assert Path(overlay).name in ("staging", "production")
        step_using(job, "aws-actions/configure-aws-credentials")
        script = runs(job)
        assert 'kustomize edit set image "$IMAGE_NAME=$IMAGE"' in script
        assert "kubectl apply -f rendered.yaml" in script, "apply what was rendered and checked"
        assert "rollout status deployment/churn-serving" in script
        assert "rollout undo deployment/churn-serving" in script
        undo = [s for s in steps(job) if "rollout undo" in s.get("run", "")]
        assert undo[0]["if"] == "failure()"
        set_image = [s for s in steps(job) if "kustomize edit set image" in s.get("run", "")]
        assert set_image[0]["working-directory"] == "${{ env.OVERLAY }}"
    assert data["env"]["IMAGE_NAME"] == "churn", "the image name the k8s manifests use"
