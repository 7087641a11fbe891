"""Champion/challenger against a real MLflow tracking server and registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from churn import files, generator
from churn.adapters.registry import PRODUCTION, STAGING, ModelRegistry
from churn.adapters.registry_actions import RegistryActions
from churn.params import Params
from churn.settings import Settings
from churn_jobs import clients, promotion_stage, stages


@pytest.fixture(scope="module")
def labelled() -> pa.Table:
    return pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=4_000, seed=11)))


def shuffled(table: pa.Table, seed: int) -> pa.Table:
    """The same customers with their labels permuted: a model trained on it learns nothing."""
    labels = np.asarray(table.column("churned").to_pylist())
    permuted = np.random.default_rng(seed).permutation(labels)
    return table.set_column(table.column_names.index("churned"), "churned", pa.array(permuted))


def run_pipeline(root: Path, settings: Settings, params: Params, table: pa.Table, shuffle: int | None = None,
                 apply: bool = True) -> dict:
    """All stages, promotion applied as the training CronJob does (`churn train --promote`); with
    `shuffle`, the train and validation labels (never the test labels) are permuted."""
    layout = stages.Layout(root)
    files.write_parquet(table, layout.source)
    stages.ingest(settings, params, layout)
    stages.validate_split(params, layout)
    if shuffle is not None:
        for name in ("train", "valid"):
            path = layout.split / f"{name}.parquet"
            files.write_parquet(shuffled(files.read_table(path), shuffle), path)
    stages.train(settings, params, layout)
    stages.evaluate(settings, params, layout)
    return promotion_stage.promote(settings, params, layout, apply)


@pytest.fixture
def settings(mlflow_uri: str, unique_name: str) -> Settings:
    return Settings.from_env({}, mlflow_tracking_uri=mlflow_uri, model_name=unique_name)


def test_first_model_is_promoted_to_staging_and_production(tmp_path, settings, params, labelled):
    record = run_pipeline(tmp_path, settings, params, labelled)

    assert record["promote"] is True and record["reason"] == "no production model yet"
    registry = ModelRegistry(clients.mlflow_client(settings), settings.model_name)
    assert registry.version_for(PRODUCTION).version == record["version"]
    assert registry.version_for(STAGING).version == record["version"]
    assert files.read_json(tmp_path / "metrics" / "promotion.json")["version"] == record["version"]


def test_worse_challenger_is_never_promoted_and_better_one_is(tmp_path, settings, params, labelled):
    registry = ModelRegistry(clients.mlflow_client(settings), settings.model_name)
    good = run_pipeline(tmp_path / "good", settings, params, labelled)
    assert good["promote"] is True

    worse = run_pipeline(tmp_path / "worse", settings, params, labelled, shuffle=1)

    assert worse["promote"] is False
    assert worse["champion_version"] == good["version"]
    assert worse["challenger"] < worse["champion"]
    assert registry.version_for(PRODUCTION).version == good["version"]
    rejected = [v for v in registry.versions() if v.version == worse["version"]][0]
    assert rejected.tags["verdict"] == "rejected"
    run = clients.mlflow_client(settings).get_run(rejected.run_id)
    assert run.data.tags["promotion.verdict"] == "rejected"


def test_better_challenger_replaces_a_weak_champion(tmp_path, settings, params, labelled):
    weak = run_pipeline(tmp_path / "weak", settings, params, labelled, shuffle=2)
    assert weak["promote"] is True  # the first model always is

    better = run_pipeline(tmp_path / "better", settings, params, labelled)

    assert better["promote"] is True
    assert better["champion_version"] == weak["version"]
    assert better["challenger"] > better["champion"]
    registry = ModelRegistry(clients.mlflow_client(settings), settings.model_name)
    assert registry.version_for(PRODUCTION).version == better["version"]


def test_rollback_restores_the_previous_production_version(tmp_path, settings, params, labelled, monkeypatch):
    registry = ModelRegistry(clients.mlflow_client(settings), settings.model_name)
    first = run_pipeline(tmp_path / "a", settings, params, labelled, shuffle=3)
    second = run_pipeline(tmp_path / "b", settings, params, labelled)
    assert registry.version_for(PRODUCTION).version == second["version"]

    before, after = RegistryActions(registry).rollback(reason="the newer one misbehaves", by="tester")

    assert (before, after) == (second["version"], first["version"])
    assert registry.version_for(PRODUCTION).version == first["version"]
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str((tmp_path / "tmp").resolve()))
    (tmp_path / "tmp").mkdir()
    loaded = registry.load(PRODUCTION)
    assert loaded.version == first["version"]
    assert list((tmp_path / "tmp").iterdir()) == [], "a registry load leaves its download behind"


def test_registered_versions_carry_metrics_params_and_lineage(tmp_path, settings, params, labelled):
    record = run_pipeline(tmp_path, settings, params, labelled)
    client = clients.mlflow_client(settings)
    version = [v for v in ModelRegistry(client, settings.model_name).versions() if v.version == record["version"]][0]
    run = client.get_run(version.run_id)

    assert {"test.f1", "test.roc_auc", "test.brier", "valid.f1", "trees"} <= set(run.data.metrics)
    assert run.data.params["hyperparameters.n_estimators"] == "60"
    assert len(run.data.tags["data_hash"]) == 64 and run.data.tags["git_commit"]
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"model", "plots", "metrics"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(version.run_id, "plots")}
    assert {"roc.png", "pr.png", "calibration.png", "confusion_matrix.png", "feature_importance.png"} <= plots


def test_model_list_and_rollback_commands_show_and_move_the_alias(tmp_path, settings, params, labelled, monkeypatch):
    from click.testing import CliRunner

    from churn_jobs.cli import cli

    first = run_pipeline(tmp_path / "a", settings, params, labelled, shuffle=4)
    second = run_pipeline(tmp_path / "b", settings, params, labelled)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("CHURN_MODEL_NAME", settings.model_name)
    runner = CliRunner()

    listed = runner.invoke(cli, ["--log-format", "text", "model", "list"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines()[1:] if line.strip()}
    assert "production" in rows[second["version"]] and "promoted" in rows[second["version"]]
    assert "production" not in rows[first["version"]]

    rolled = runner.invoke(cli, ["--log-format", "text", "model", "rollback", "--reason", "bad night"])
    assert rolled.exit_code == 0, rolled.output
    assert f"version {second['version']} -> version {first['version']}" in rolled.output

    again = runner.invoke(cli, ["--log-format", "text", "model", "rollback", "--reason", "again"])
    assert again.exit_code == 3  # nothing earlier to roll back to: a clear refusal, not a crash


@pytest.fixture(scope="module")
def hand_registry(mlflow_server, params, labelled, tmp_path_factory) -> dict:
    """A model with two evaluated versions (the second is production) and one never evaluated."""
    import uuid

    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("hand")
    settings = Settings.from_env({}, mlflow_tracking_uri=mlflow_server.tracking_uri,
                                 model_name=f"hand-{uuid.uuid4().hex[:8]}")
    first = run_pipeline(root / "a", settings, params, labelled, shuffle=5)
    second = run_pipeline(root / "b", settings, params, labelled)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    run_id = client.create_run(client.get_experiment_by_name("churn").experiment_id).info.run_id
    client.log_artifacts(run_id, str(root / "a" / "models" / "challenger"), "model")
    unevaluated = ModelRegistry(client, settings.model_name).register(
        run_id, model_dir=root / "a" / "models" / "challenger")
    return {"settings": settings, "first": first["version"], "second": second["version"],
            "unevaluated": unevaluated, "client": client}


def churn(hand: dict, *args: str):
    from click.testing import CliRunner

    from churn_jobs.cli import cli

    env = {"MLFLOW_TRACKING_URI": hand["settings"].tracking_uri, "CHURN_MODEL_NAME": hand["settings"].model_name}
    return CliRunner().invoke(cli, ["--log-format", "text", *args], env=env)


def test_promote_and_rollback_by_hand_record_who_when_and_why(hand_registry):
    hand = hand_registry
    registry = ModelRegistry(clients.mlflow_client(hand["settings"]), hand["settings"].model_name)
    first, second, unevaluated = hand["first"], hand["second"], hand["unevaluated"]
    assert registry.version_for(PRODUCTION).version == second

    refused = churn(hand, "model", "promote", unevaluated, "--reason", "try it")
    assert refused.exit_code == 3 and "never passed evaluation (its run has no test metrics)" in refused.output
    assert registry.version_for(PRODUCTION).version == second

    promoted = churn(hand, "model", "promote", first, "--reason", "A/B winner", "--by", "alice")
    assert promoted.exit_code == 0, promoted.output
    assert f"production: version {second} -> version {first}" in promoted.output
    tags = registry.version(first).tags
    assert (tags["promote.by"], tags["promote.reason"], tags["promote.from"], tags["promote.forced"]) == (
        "alice", "A/B winner", second, "false")
    assert tags["promote.at"].endswith("Z") and registry.version_for(STAGING).version == first

    back = churn(hand, "model", "rollback", "--to", second, "--reason", "A/B over", "--by", "bob")
    assert back.exit_code == 0 and registry.version_for(PRODUCTION).version == second, back.output
    assert registry.version(second).tags["rollback.reason"] == "A/B over"
    assert registry.version(first).tags["rolled_back"] == "true"

    forced = churn(hand, "model", "promote", unevaluated, "--reason", "hotfix", "--force", "--by", "carol")
    assert forced.exit_code == 0 and registry.version(unevaluated).tags["promote.forced"] == "true", forced.output

    previous = churn(hand, "model", "rollback", "--reason", "hotfix broke it")
    assert previous.exit_code == 0 and registry.version_for(PRODUCTION).version == second, previous.output

    audit = [json.loads(v) for k, v in hand["client"].get_registered_model(hand["settings"].model_name).tags.items()
             if k.startswith("audit.")]
    moves = {(a["action"], a["version"], a["by"], a["forced"]) for a in audit}
    assert {("promote", first, "alice", "false"), ("rollback", second, "bob", "false"),
            ("promote", unevaluated, "carol", "true")} <= moves
    assert len(audit) == 4 and {a["reason"] for a in audit} == {"A/B winner", "A/B over", "hotfix", "hotfix broke it"}


def test_model_show_prints_the_card_and_logs_it_as_markdown(hand_registry):
    hand = hand_registry
    version = hand["second"]
    run = hand["client"].get_run(ModelRegistry(hand["client"], hand["settings"].model_name).version(version).run_id)

    shown = churn(hand, "model", "show", version)

    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert f"{hand['settings'].model_name} version {version}" in text
    assert run.data.tags["data_hash"] in text and "threshold" in text and "verdict" in text and "promoted" in text
    assert "test.f1" in text and "test.roc_auc" in text and "test rows" in text
    assert "tenure (int): >= 0 and <= 1200" in text and "contract (category): one of Month-to-month" in text
    assert "plots/roc.png" in text and "hyperparameters.n_estimators = 60" in text

    logged = churn(hand, "model", "show", version, "--format", "markdown", "--log")
    assert logged.exit_code == 0 and logged.output.startswith(f"# Model card: {hand['settings'].model_name}")
    cards = [a.path for a in hand["client"].list_artifacts(run.info.run_id, "model_card")]
    assert f"model_card/v{version}.md" in cards

    missing = churn(hand, "model", "show", "999")
    assert missing.exit_code == 3 and "has no version '999'" in missing.output


def test_model_list_of_an_empty_registry_says_where_it_looked_and_what_to_run(mlflow_uri, unique_name):
    hand = {"settings": Settings.from_env({}, mlflow_tracking_uri=mlflow_uri, model_name=unique_name)}
    listed = churn(hand, "model", "list")
    assert listed.exit_code == 3
    assert f"MLFLOW_TRACKING_URI={mlflow_uri}" in listed.output and "dvc repro" in listed.output


def test_without_apply_a_winner_is_registered_and_judged_but_production_does_not_move(
    tmp_path, settings, params, labelled
):
    """Issue 12: `dvc repro` (promotion.apply false) never moves production; `--apply` does, reusing the version."""
    registry = ModelRegistry(clients.mlflow_client(settings), settings.model_name)
    weak = run_pipeline(tmp_path / "weak", settings, params, labelled, shuffle=5)
    assert params.promotion.apply is False

    better = run_pipeline(tmp_path / "better", settings, params, labelled, apply=params.promotion.apply)

    assert better["promote"] is True and better["applied"] is False
    assert registry.version_for(PRODUCTION).version == weak["version"]
    passed = [v for v in registry.versions() if v.version == better["version"]][0]
    assert passed.tags["verdict"] == "passed" and passed.tags["promotion.applied"] == "false"

    again = promotion_stage.promote(settings, params, stages.Layout(tmp_path / "better"), apply=True)

    assert again["applied"] is True and again["version"] == better["version"]
    assert registry.version_for(PRODUCTION).version == better["version"]
    assert [v.version for v in registry.versions()].count(better["version"]) == 1


def test_the_paired_interval_is_recorded_in_promotion_json_run_and_version(tmp_path, settings, params, labelled):
    run_pipeline(tmp_path / "weak", settings, params, labelled, shuffle=6)
    record = run_pipeline(tmp_path / "good", settings, params, labelled)

    assert record["delta_low"] < record["delta"] < record["delta_high"] and record["delta_low"] > 0
    assert record["test_rows"] == 800 and record["confidence"] == 0.95
    on_disk = files.read_json(tmp_path / "good" / "metrics" / "promotion.json")
    assert on_disk["delta_low"] == record["delta_low"] and on_disk["applied"] is True
    client = clients.mlflow_client(settings)
    version = [v for v in ModelRegistry(client, settings.model_name).versions() if v.version == record["version"]][0]
    assert float(version.tags["promotion.f1_delta_low"]) == pytest.approx(record["delta_low"], abs=1e-6)
    assert float(version.tags["promotion.f1_delta"]) == pytest.approx(record["delta"], abs=1e-6)
    assert float(version.tags["promotion.f1_delta_high"]) == pytest.approx(record["delta_high"], abs=1e-6)
    run = client.get_run(version.run_id)
    assert run.data.metrics["promotion.f1_delta_low"] == pytest.approx(record["delta_low"])
    assert run.data.tags["promotion.verdict"] == "promoted"


def test_a_search_that_runs_out_of_budget_says_so_in_mlflow(tmp_path, settings, params, labelled):
    starved = params.with_overrides({"tuning.enabled": "true", "tuning.budget.base_seconds": "0",
                                     "tuning.budget.seconds_per_1k_rows": "0"})
    record = run_pipeline(tmp_path, settings, starved, labelled)

    run = clients.mlflow_client(settings).get_run(files.read_json(tmp_path / "metrics" / "train.json")["run_id"])
    assert "ran out before one trial finished: the defaults are used" in run.data.tags["search.fallback"]
    assert run.data.metrics["search.trials"] == 0
    assert record["promote"] is True


def test_unknown_category_values_in_training_rows_are_named_in_mlflow(tmp_path, settings, params, labelled):
    """Issue 14: a value missing from the schema in a few training rows is named with its count (issue 10:
    under the default `unknown: missing` the rows are kept with the value missing, as scoring treats them)."""
    contract = labelled.column("contract").to_pylist()
    for i in range(0, 4_000, 100):
        contract[i] = "Monthly"
    table = labelled.set_column(labelled.column_names.index("contract"), "contract", pa.array(contract))

    run_pipeline(tmp_path, settings, params, table)

    validation = files.read_json(tmp_path / "metrics" / "validation.json")
    assert validation["unseen_categories"] == {"contract": {"Monthly": 40}} and validation["unknown_categories"] == {}
    run = clients.mlflow_client(settings).get_run(files.read_json(tmp_path / "metrics" / "train.json")["run_id"])
    assert run.data.tags["validation.unseen_category.contract"] == "contract='Monthly' x40"
    assert run.data.metrics["validation.unseen_category_rows"] == 40
