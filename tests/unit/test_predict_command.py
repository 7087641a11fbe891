"""`churn predict` as an operator runs it: the installed executable in a subprocess, a model
directory, local files, no server."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_cli import errors, run
from unknown_policy import rejected_kind

from churn import generator
from churn.errors import ConfigError
from churn.files import output_format


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 customers in Parquet, ~5% of them broken (rejects) and some messy but valid."""
    path = tmp_path_factory.mktemp("predict") / "customers.parquet"
    config = generator.GeneratorConfig(n_customers=300, seed=5, dirty_rate=0.1, labelled_share=0.0)
    pq.write_table(pa.concat_tables(generator.generate(config)), path)
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    """No model configured anywhere: a registry lookup would fail (empty SQLite store)."""
    return {"CHURN_DATA_DIR": str(tmp_path / "data"), "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def _summary(stdout: str) -> dict[str, object]:
    return json.loads(stdout.strip().splitlines()[-1])


def test_predict_scores_a_parquet_file_from_a_model_directory_and_returns_every_row(
    tmp_path: Path, model_dir: Path, source: Path
) -> None:
    out = tmp_path / "scored.parquet"

    result = run("churn", "predict", "--source", str(source), "--out", str(out), "--model-uri", str(model_dir),
                 "--chunk-rows", "70", env=_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    table = pq.read_table(out)
    kinds = pa.concat_tables([pq.read_table(source)]).column("dirty_kind").to_pylist()
    expected_rejects = sum(1 for k in kinds if rejected_kind(k))  # unseen categories are scored as missing
    summary = _summary(result.stdout)
    assert summary["rows"] == 300 == table.num_rows and summary["rejected"] == expected_rejects > 0
    assert summary["scored"] == 300 - expected_rejects
    assert table.column("source_row").to_pylist() == list(range(300))
    assert table.column("customer_id").to_pylist() == pq.read_table(source).column("customer_id").to_pylist()
    rows = table.to_pylist()
    assert all(r["rejected_reason"] for r in rows if r["status"] == "rejected")
    assert all(r["reason_1"] and r["reason_1_value"] and " risk (" in r["reasons"] for r in rows
               if r["status"] == "scored")
    warned = [json.loads(line) for line in result.stdout.splitlines() if '"level": "warning"' in line]
    assert any(f"{expected_rejects} of 300 rows were rejected" in w["msg"] for w in warned)
    assert not list(tmp_path.glob(".scored.parquet*"))  # no temporary file left behind


def test_predict_writes_csv_from_a_headerless_csv_and_honours_the_reason_count(
    tmp_path: Path, model_dir: Path, source: Path
) -> None:
    from churn.params import load_params

    features = load_params(None).schema.feature_names
    headerless = tmp_path / "raw.csv"
    table = pq.read_table(source, columns=["customer_id", *features]).slice(0, 40)
    pacsv.write_csv(table, headerless, pacsv.WriteOptions(include_header=False))
    out = tmp_path / "OUT.CSV"

    result = run("churn", "predict", "--source", str(headerless), "--out", str(out), "--reasons", "1",
                 "--model-uri", str(model_dir), env=_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["customer_id"] for r in rows] == table.column("customer_id").to_pylist()
    assert "reason_1_value" in rows[0] and "reason_2" not in rows[0]


@pytest.mark.parametrize("name", ["out.json", "out.txt", "out", "out.parquet.gz"])
def test_only_parquet_and_csv_names_pick_an_output_format(name: str) -> None:
    with pytest.raises(ConfigError, match=r"\.parquet or \.csv"):
        output_format(name)
    assert output_format("x.PARQUET") == ".parquet" and output_format("dir.v2/x.csv") == ".csv"


def test_predict_refuses_an_output_format_it_cannot_write_before_loading_a_model(tmp_path: Path, source: Path) -> None:
    name = "out.json"
    result = run("churn", "predict", "--source", str(source), "--out", str(tmp_path / name),
                 "--model-uri", str(tmp_path / "no-such-model"), env=_env(tmp_path))

    assert result.returncode == 3
    (message,) = errors(result)
    assert name in message and ".parquet" in message and ".csv" in message
    assert not (tmp_path / name).exists()


def test_predict_without_a_model_says_where_it_looked_and_exits_3(tmp_path: Path, source: Path) -> None:
    result = run("churn", "predict", "--source", str(source), "--out", str(tmp_path / "o.csv"), env=_env(tmp_path))

    assert result.returncode == 3
    (message,) = errors(result)
    assert "production" in message and "mlflow.db" in message
    assert not (tmp_path / "o.csv").exists()


def test_predict_agrees_with_the_nightly_job_row_for_row(tmp_path: Path, model_dir: Path, source: Path) -> None:
    """One scoring path: probability, band and reasons equal what `score` publishes for the same file."""
    env = {**_env(tmp_path), "CHURN_MODEL_URI": str(model_dir), "RISK_TABLE_URI": str(tmp_path / "risk")}
    out = tmp_path / "p.parquet"

    scored = run("score", "--run-date", "2024-01-31", "--source", str(source), env=env)
    predicted = run("churn", "predict", "--source", str(source), "--out", str(out), env=env)

    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-2000:]
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    from deltalake import DeltaTable

    nightly = {r["customer_id"]: r for r in DeltaTable(str(tmp_path / "risk")).to_pyarrow_table().to_pylist()}
    mine = {r["customer_id"]: r for r in pq.read_table(out).to_pylist() if r["status"] == "scored"}
    assert mine.keys() == nightly.keys() and len(mine) > 250
    for customer, row in nightly.items():
        assert mine[customer]["churn_probability"] == row["churn_probability"]
        assert mine[customer]["risk_band"] == row["risk_band"]
        assert (mine[customer]["prediction"] == "Churn") == row["churn_prediction"]
        for k, reason in enumerate(row["reasons"] or [], start=1):  # only customers over the reason threshold
            assert mine[customer][f"reason_{k}"] == reason["feature"]
            assert mine[customer][f"reason_{k}_contribution"] == pytest.approx(reason["contribution"], abs=1e-12)


def test_progress_logs_counts_the_rate_and_the_share_done(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from churn_jobs import predict

    monkeypatch.setattr(predict, "PROGRESS_SECONDS", 0.0)
    progress = predict.Progress(total=400)

    with caplog.at_level(logging.INFO, logger="churn.predict"):
        progress.add(100, 95, 5)
        progress.add(100, 100, 0)

    lines = [r for r in caplog.records if r.getMessage() == "predict progress"]
    assert [(r.rows, r.scored, r.rejected, r.done) for r in lines] == [  # type: ignore[attr-defined]
        (100, 95, 5, "25%"), (200, 195, 5, "50%")]
    assert all(r.rows_per_s > 0 for r in lines)  # type: ignore[attr-defined]
