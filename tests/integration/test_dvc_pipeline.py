"""`dvc repro` of the real dvc.yaml: reruns only what changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]


def dvc(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(cwd / ".dvc-site"),
               MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}", LOG_FORMAT="json",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("MONGODB_URI", None)
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def set_param(root: Path, path: list[str], value: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    node = params
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_skips_unchanged_stages_and_reruns_only_downstream_of_a_hyperparameter(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / "params.yaml", root)
    shutil.copytree(REPO / "lib", root / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(["init", "-q"], root)
    set_param(root, ["data", "customers"], 2_000)
    set_param(root, ["model", "hyperparameters", "n_estimators"], 30)
    set_param(root, ["tuning", "enabled"], False)  # this test's own override: the search has its own tests

    first = dvc(["repro"], root)
    assert ran(first) == ["generate", "ingest", "validate", "train", "evaluate", "promote"]
    promotion = json.loads((root / "metrics" / "promotion.json").read_text())
    assert promotion["promote"] is True and promotion["applied"] is False  # dvc repro never moves production
    assert MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_registered_model("churn").aliases == {}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], cwd=root,
                   check=True)

    second = dvc(["repro"], root)
    assert ran(second) == []
    assert "Data and pipelines are up to date" in second

    set_param(root, ["model", "hyperparameters", "learning_rate"], 0.0789)  # differs from params.yaml
    third = dvc(["repro"], root)
    assert ran(third) == ["train", "evaluate", "promote"]

    metrics = dvc(["metrics", "show", "--json"], root)
    assert '"roc_auc"' in metrics and "metrics/test.json" in metrics

    # The committed baseline against this run: metrics and the curves (as data) can be compared.
    diff = json.loads(dvc(["metrics", "diff", "--json"], root))
    assert "roc_auc" in diff["metrics/test.json"] and diff["metrics/test.json"]["roc_auc"]["old"] is not None
    plots = json.loads(dvc(["plots", "diff", "--json", "HEAD"], root))["data"]
    for name in ("ROC", "Precision-recall", "Calibration", "Confusion"):
        assert set(plots[name][0]["revisions"]) == {"HEAD", "workspace"}, name
        assert plots[name][0]["content"]["data"]["values"], name


def test_promotion_applied_by_the_params_switch(tmp_path):
    """`dvc exp run -S promotion.apply=true` (here: the switch set in params.yaml) moves production."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / "params.yaml", root)
    shutil.copytree(REPO / "lib", root / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(["init", "-q"], root)
    set_param(root, ["data", "customers"], 2_000)
    set_param(root, ["model", "hyperparameters", "n_estimators"], 30)
    set_param(root, ["tuning", "enabled"], False)
    set_param(root, ["promotion", "apply"], True)

    dvc(["repro"], root)

    promotion = json.loads((root / "metrics" / "promotion.json").read_text())
    assert promotion["applied"] is True
    aliases = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_registered_model("churn").aliases
    version = promotion["version"]
    assert {k: str(v) for k, v in aliases.items()} == {"production": version, "staging": version}
