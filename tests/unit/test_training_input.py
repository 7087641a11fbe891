"""Bad training data fails with exit 3 and a one-line reason naming the count (issues 10 and 14)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from unknown_policy import rejecting_params

from churn import files, generator
from churn.errors import TooManyRejects
from churn.params import Params
from churn.settings import Settings
from churn_jobs import stages
from churn_jobs.cli import cli


def customers(n: int, seed: int = 3) -> pa.Table:
    return pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=n, seed=seed)))


def with_column(table: pa.Table, name: str, values: list) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(values))


def train(tmp_path: Path, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`churn train --source FILE` with nothing configured but a throwaway tracking store."""
    source = tmp_path / "labelled.parquet"
    files.write_parquet(table, source)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MONGODB_URI", raising=False)
    result = CliRunner().invoke(cli, ["--log-format", "text", "train", "--root", str(tmp_path), "--source",
                                      str(source)])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("one class", "training needs both classes; got 0 churned and 600 retained rows"),
        ("all labels null", "training needs at least 200 labelled rows (split.min_rows); got 0"),
        ("ten rows", "training needs at least 200 labelled rows (split.min_rows); got 10"),
        ("unreadable labels", "100.0% of labelled customers were rejected (600 of 600"),
    ],
)
def test_bad_training_data_exits_3_with_a_one_line_reason_naming_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, reason: str
) -> None:
    table = customers(600)
    if case == "one class":
        table = with_column(table, "churned", [False] * 600)
    elif case == "all labels null":
        table = with_column(table, "churned", pa.nulls(600, pa.bool_()))
    elif case == "ten rows":
        table = table.slice(0, 10)
    else:
        table = with_column(table, "churned", ["maybe"] * 600)

    code, output = train(tmp_path, table, monkeypatch)

    assert code == 3, output
    assert reason in output
    assert "Traceback" not in output
    assert not (tmp_path / "models" / "challenger").exists()


def test_unreadable_labels_are_named_with_their_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = train(tmp_path, with_column(customers(600), "churned", ["maybe"] * 600), monkeypatch)
    assert code == 3 and "x600" in output


def unknown_contracts(every: int) -> pa.Table:
    table = customers(2_000)
    contract = table.column("contract").to_pylist()
    for i in range(0, table.num_rows, every):
        contract[i] = "Monthly"
    return with_column(table, "contract", contract)


def test_a_category_value_missing_from_the_schema_is_named_with_its_count(
    tmp_path: Path, params: Params, caplog: pytest.LogCaptureFixture
) -> None:
    params = rejecting_params(params)  # unknown: reject, the behaviour before the policy
    layout = stages.Layout(tmp_path)
    files.write_parquet(unknown_contracts(25), layout.source)  # 80 rows, 4%: under max_reject_share

    with caplog.at_level(logging.WARNING, logger="churn_jobs.stages"):
        stages.ingest(Settings.from_env({}), params, layout)
    summary = stages.validate_split(params, layout)

    assert any("contract='Monthly' x80" in r.getMessage() for r in caplog.records)
    assert summary["unknown_categories"] == {"contract": {"Monthly": 80}} and summary["unknown_category_rows"] == 80
    assert files.read_json(layout.metrics / "validation.json")["unknown_categories"] == {"contract": {"Monthly": 80}}


def test_too_many_unknown_category_values_fail_naming_the_value(tmp_path: Path, params: Params) -> None:
    params = rejecting_params(params)
    layout = stages.Layout(tmp_path)
    files.write_parquet(unknown_contracts(10), layout.source)  # 200 rows, 10%: over max_reject_share
    stages.ingest(Settings.from_env({}), params, layout)

    with pytest.raises(TooManyRejects) as err:
        stages.validate_split(params, layout)

    assert "200 of 2000" in str(err.value) and "unknown_category x200" in str(err.value)
    assert "contract='Monthly' x200" in str(err.value)


def test_unseen_category_values_are_kept_as_missing_and_named_with_their_count_by_default(
    tmp_path: Path, params: Params, caplog: pytest.LogCaptureFixture
) -> None:
    layout = stages.Layout(tmp_path)
    files.write_parquet(unknown_contracts(10), layout.source)  # 200 rows, 10%: over max_reject_share if rejected

    with caplog.at_level(logging.WARNING, logger="churn_jobs.stages"):
        snapshot = stages.ingest(Settings.from_env({}), params, layout)
    summary = stages.validate_split(params, layout)

    assert snapshot["rejected"] == 0 and summary["unknown_categories"] == {}
    assert summary["unseen_categories"] == {"contract": {"Monthly": 200}} and summary["unseen_category_rows"] == 200
    assert any("contract='Monthly' x200" in r.getMessage() and "missing" in r.getMessage() for r in caplog.records)


def test_train_reports_learned_category_values_in_train_json_and_mlflow(
    tmp_path: Path, params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import yaml

    raw = copy.deepcopy(params.raw)
    features = raw["schema"]["features"]
    del next(f for f in features if f["name"] == "contract")["values"]
    features.append({"name": "region", "type": "category"})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("CHURN_PARAMS", str(params_file))
    table = customers(1_500)
    table = table.append_column("region", pa.array([("North", "South", "East")[i % 3] for i in range(1_500)]))
    internet = table.column("internet_service").to_pylist()
    table = with_column(table, "internet_service", ["Satellite" if i % 50 == 0 else v for i, v in enumerate(internet)])

    code, output = train(tmp_path, table, monkeypatch)

    assert code == 0, output
    learned = files.read_json(tmp_path / "metrics" / "train.json")["learned_categories"]
    assert sorted(learned) == ["contract", "region"]
    assert sorted(learned["region"]["values"]) == ["East", "North", "South"] and learned["region"]["kept"] == 3
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string="tags.`schema.learned.region` != ''")
    assert run.data.tags["schema.learned.region"].startswith("3 values: ")
    assert set(run.data.tags["schema.learned.contract"].split(": ")[1].split(", ")) == {
        "Month-to-month", "One year", "Two year"}
    # A listed category under the default `unknown: missing`: the rows are kept and the values named.
    assert run.data.tags["validation.unseen_category.internet_service"] == "internet_service='Satellite' x30"
    assert run.data.metrics["validation.unseen_category_rows"] == 30
