"""The command line as an operator meets it: the installed executables, run in a subprocess
on local files (no servers): help text, file formats, backfill, shell completion."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BIN = Path(sys.executable).parent


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MONGODB", "PUSHGATEWAY", "MLFLOW"))}
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], env={**base, "LOG_FORMAT": "json", **(env or {})},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines a job logged (JSON logs on stdout)."""
    return [json.loads(line)["msg"] for line in result.stdout.splitlines() if '"level": "error"' in line]


# ------------------------------------------------------------------ help
def test_train_help_names_the_train_executable_once() -> None:
    result = run("train", "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: train [OPTIONS]\n"), result.stdout.splitlines()[0]
    for option in ("--params", "--log-format", "--root", "--source"):
        assert option in result.stdout


def test_the_train_executable_takes_the_group_options(tmp_path: Path) -> None:
    """`train --params` reaches the settings exactly as `churn --params ... train` does."""
    result = run("train", "--params", str(tmp_path / "absent.yaml"), "--root", str(tmp_path))

    assert result.returncode == 3 and "absent.yaml" in " ".join(errors(result)), result.stdout + result.stderr


# ------------------------------------------------------------------ data generate
@pytest.mark.parametrize("name", ["g.json", "g.txt", "customers"])
def test_generate_refuses_an_extension_it_cannot_write(tmp_path: Path, name: str) -> None:
    result = run("churn", "data", "generate", "--customers", "5", "--out", str(tmp_path / name))

    assert result.returncode == 3
    (message,) = errors(result)
    assert name in message and ".parquet" in message and ".csv" in message
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", ["g.csv", "G.CSV"])
def test_generate_writes_csv_for_a_csv_name_in_any_case(tmp_path: Path, name: str) -> None:
    result = run("churn", "data", "generate", "--customers", "5", "--out", str(tmp_path / name))

    assert result.returncode == 0, result.stdout + result.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / name).read_text())))
    assert len(rows) == 5 and "customer_id" in rows[0]


def test_generate_writes_parquet_for_a_parquet_name(tmp_path: Path) -> None:
    result = run("churn", "data", "generate", "--customers", "5", "--out", str(tmp_path / "g.parquet"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert pq.read_table(tmp_path / "g.parquet").num_rows == 5


# ------------------------------------------------------------------ backfill
@pytest.fixture
def local_job(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    """A scoring job on local files: a model directory, customers in Parquet, a local risk table."""
    from churn import generator

    config = generator.GeneratorConfig(n_customers=300, seed=3, labelled_share=0.0)
    pq.write_table(pa.concat_tables(generator.generate(config)), tmp_path / "customers.parquet")
    return {
        "CHURN_MODEL_URI": str(model_dir),
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "RISK_TABLE_URI": str(tmp_path / "risk"),
        "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }


def _risk_rows(env: dict[str, str], day: str) -> list[str]:
    result = run("churn", "risk", "top", "--date", day, "--limit", "100000", "--format", "csv", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(row["customer_id"] for row in csv.DictReader(io.StringIO(result.stdout)))


def test_backfill_scores_each_date_once_and_a_rerun_replaces_them(tmp_path: Path, local_job: dict[str, str]) -> None:
    days = ["2024-02-28", "2024-02-29", "2024-03-01"]
    source = str(tmp_path / "customers.parquet")
    customers = sorted(pq.read_table(source).column("customer_id").to_pylist())

    first = run("churn", "backfill", "--from", days[0], "--to", days[-1], "--source", source, env=local_job)
    again = run("churn", "backfill", "--from", days[0], "--to", days[-1], "--source", source, env=local_job)

    for result in (first, again):
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        scored = [json.loads(line)["run_date"] for line in result.stdout.splitlines() if line.startswith('{"run_date"')]
        assert scored == days
    for day in days:
        assert _risk_rows(local_job, day) == customers, f"{day}: one row per customer after a rerun"


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [("2024-03-02", "2024-03-01", "before"), ("2024-01-01", "2026-01-01", "at most"), ("2024-13-01", "2024-12-31", "")],
)
def test_backfill_refuses_a_range_that_makes_no_sense(first: str, last: str, says: str) -> None:
    result = run("churn", "backfill", "--from", first, "--to", last)

    assert result.returncode == 3
    (message,) = errors(result)
    assert says in message and "\n" not in message


def test_backfill_stops_at_the_first_failing_date_with_its_exit_code(tmp_path: Path) -> None:
    env = {"CHURN_MODEL_URI": str(tmp_path / "no-model"), "RISK_TABLE_URI": str(tmp_path / "risk"),
           "CHURN_DATA_DIR": str(tmp_path), "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml")}
    (tmp_path / "customers.parquet").write_bytes(b"")

    result = run("churn", "backfill", "--from", "2024-01-01", "--to", "2024-01-03", env=env)

    assert result.returncode == 3, result.stdout + result.stderr
    stopped = [json.loads(line) for line in result.stdout.splitlines() if "backfill stopped" in line]
    assert [entry["run_date"] for entry in stopped] == ["2024-01-01"]


# ------------------------------------------------------------------ shell completion
def test_shell_completion_scripts_and_completions_come_from_click() -> None:
    """The README's `_CHURN_COMPLETE=bash_source churn` and what the shell then asks for."""
    def complete(words: str, current: int) -> list[str]:
        env = {"_CHURN_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(current)}
        return run("churn", env=env).stdout.splitlines()

    script = run("churn", env={"_CHURN_COMPLETE": "bash_source"})

    assert script.returncode == 0 and "complete -o nosort -F _churn_completion churn" in script.stdout
    assert "plain,backfill" in complete("churn ba", 1)
    assert {"plain,list", "plain,rollback"} <= set(complete("churn model ", 2))


def test_score_writes_the_share_of_unseen_category_values_per_feature_to_its_metrics(
    tmp_path: Path, local_job: dict[str, str]
) -> None:
    import pyarrow.compute as pc
    from prometheus_client.parser import text_string_to_metric_families

    source = tmp_path / "unseen.parquet"
    table = pq.read_table(tmp_path / "customers.parquet")
    contract = table.column("contract").to_pylist()
    active = pc.equal(table.column("status"), "active").to_pylist()
    changed = [i for i in range(0, table.num_rows, 10) if active[i]]
    for i in changed:
        contract[i] = "Weekly"
    pq.write_table(table.set_column(table.column_names.index("contract"), "contract", pa.array(contract)), source)

    result = run("churn", "score", "--run-date", "2024-02-01", "--source", str(source), "--no-reasons", env=local_job)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = (tmp_path / "data" / "metrics" / "churn_scoring.prom").read_text()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "churn_scoring_unseen_category_share")
    shares = {s.labels["feature"]: s.value for s in family.samples}
    assert shares["contract"] == pytest.approx(len(changed) / sum(active)) and shares["internet_service"] == 0.0
