"""The pipeline's data and model outputs round-trip through a DVC remote on the S3 test server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from churn import generator

REPO = Path(__file__).resolve().parents[2]


def dvc(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_dvc_push_then_pull_restores_tracked_outputs(tmp_path, s3_server, s3_bucket):
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp_path / "site"),
               AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
               AWS_DEFAULT_REGION=s3_server.region)
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc(["init", "-q"], project, env)
    # Configured from the environment, as docs/deployment.md describes.
    dvc(["remote", "add", "-d", "--local", "storage", f"s3://{s3_bucket}/dvc"], project, env)
    dvc(["remote", "modify", "--local", "storage", "endpointurl", s3_server.endpoint_url], project, env)
    data = project / "data"
    data.mkdir()
    generator.write_parquet(generator.GeneratorConfig(n_customers=2_000, seed=9), data / "customers.parquet")
    model = project / "models" / "challenger"
    shutil.copytree(REPO / "lib" / "churn" / "defaults", model)  # any directory output will do
    original = (data / "customers.parquet").read_bytes()
    dvc(["add", "data/customers.parquet", "models/challenger"], project, env)

    pushed = dvc(["push"], project, env)
    assert "pushed" in pushed.lower()

    (data / "customers.parquet").unlink()
    shutil.rmtree(model)
    shutil.rmtree(project / ".dvc" / "cache")
    dvc(["pull"], project, env)

    assert (data / "customers.parquet").read_bytes() == original
    assert (model / "params.yaml").is_file()
