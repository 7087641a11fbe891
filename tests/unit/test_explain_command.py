"""`churn explain` as an operator runs it on a laptop: a local risk table written by `score`, a
model directory, the customers file; the executable in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_cli import errors, run

from churn import generator
from churn.params import load_params
from churn.validation import validate

DAY = "2024-01-31"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Any]:
    """One nightly run on local files: its environment, the customers and the risk rows."""
    root = tmp_path_factory.mktemp("explain")
    config = generator.GeneratorConfig(n_customers=300, seed=11, dirty_rate=0.05, labelled_share=0.0)
    customers = pa.concat_tables(generator.generate(config))
    pq.write_table(customers, root / "customers.parquet")
    env = {"CHURN_MODEL_URI": str(model_dir), "RISK_TABLE_URI": str(root / "risk"),
           "CHURN_DATA_DIR": str(root), "SAGEMAKER_BASE_DIR": str(root / "opt-ml"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    scored = run("score", "--run-date", DAY, env=env)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-2000:]
    from deltalake import DeltaTable

    rows = DeltaTable(str(root / "risk")).to_pyarrow_table().to_pylist()
    return {"env": env, "root": root, "customers": customers, "rows": {r["customer_id"]: r for r in rows}}


def flagged(night: dict[str, Any]) -> dict[str, Any]:
    """The riskiest customer: stored with reasons."""
    return max((r for r in night["rows"].values() if r["reasons"]), key=lambda r: r["churn_probability"])


def test_explain_reads_the_stored_row_in_words_and_says_what_the_table_does_not_keep(night: dict[str, Any]) -> None:
    row = flagged(night)

    result = run("churn", "explain", row["customer_id"], env=night["env"])

    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert f"customer {row['customer_id']} on {DAY}: churn probability {row['churn_probability']:.2f}" in text
    for reason in row["reasons"]:
        assert f"{reason['feature'].replace('_', ' ')} " in text and f"{reason['contribution']:+.3f}" in text
    assert "keeps only the top 3 reasons, without the customer's values" in text
    assert f"churn explain {row['customer_id']} --date {DAY} --full" in text


def test_explain_full_rescores_the_customers_record_and_finds_the_stored_score(night: dict[str, Any]) -> None:
    row = flagged(night)
    record = next(r for r in night["customers"].to_pylist() if r["customer_id"] == row["customer_id"])

    result = run("churn", "explain", row["customer_id"], "--date", DAY, "--full", "--format", "json", env=night["env"])

    assert result.returncode == 0, result.stdout + result.stderr
    story = json.loads(result.stdout.strip().splitlines()[-1])
    effects = story["full"]["effects"]
    assert story["full"]["churn_probability"] == pytest.approx(row["churn_probability"], abs=1e-12)
    assert len(effects) == 9
    (validated,) = validate([record], load_params(None).schema).clean.to_pylist()  # " 87.04" is 87.04
    assert {e["feature"]: e["value"] for e in effects} == {e["feature"]: validated[e["feature"]] for e in effects}
    assert [e["feature"] for e in effects[:3]] == [r["feature"] for r in row["reasons"]]
    assert "to the same probability" in story["notes"][0]
    assert story["stored_reasons"][0]["words"].startswith(row["reasons"][0]["feature"].replace("_", " "))


def test_explain_full_says_when_the_record_changed_since_the_night(night: dict[str, Any], tmp_path: Path) -> None:
    row = flagged(night)
    customers = night["customers"]
    changed = customers.set_column(
        customers.schema.get_field_index("contract"), "contract",
        pc.if_else(pc.equal(customers.column("customer_id"), row["customer_id"]), "Two year",
                   customers.column("contract")),
    )
    pq.write_table(changed, tmp_path / "today.parquet")

    result = run("churn", "explain", row["customer_id"], "--full", "--source", str(tmp_path / "today.parquet"),
                 env=night["env"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "record changed since" in result.stdout and "contract Two year" in result.stdout


def test_explain_a_rejected_customer_gives_the_reasons_it_was_not_scored(night: dict[str, Any]) -> None:
    kinds = night["customers"].column("dirty_kind").to_pylist()
    customer = next(r["customer_id"] for r, k in zip(night["customers"].to_pylist(), kinds)
                    if k == "reject:negative_tenure")

    result = run("churn", "explain", customer, env=night["env"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "not scored, its record was rejected" in result.stdout
    assert "tenure: out_of_bounds" in result.stdout and "must be between 0 and 1200" in result.stdout


def test_explain_an_unknown_customer_exits_3_naming_the_table(night: dict[str, Any]) -> None:
    result = run("churn", "explain", "NOBODY", env=night["env"])

    assert result.returncode == 3
    (message,) = errors(result)
    assert "'NOBODY' has no row" in message and str(night["root"] / "risk") in message


def test_explain_a_record_gives_every_feature_in_words_largest_first(night: dict[str, Any]) -> None:
    record = {"tenure": 2, "monthly_charges": 89.1, "total_charges": None, "contract": "Month-to-month",
              "payment_method": "Electronic check", "internet_service": "Fiber optic", "tech_support": "No",
              "online_security": "No", "support_calls": 5}

    result = run("churn", "explain", "--record", json.dumps(record), env=night["env"])

    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("  + ", "  - ", "    "))]
    assert len(lines) == 9
    sizes = [abs(float(line.split()[-1])) for line in lines]
    assert sizes == sorted(sizes, reverse=True)
    for words in ("tenure 2 months", "contract Month-to-month", "total charges missing", "monthly charges 89.1"):
        assert words in result.stdout


def test_explain_a_record_that_does_not_validate_names_the_field_and_exits_3(night: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"tenure": 3, "contract": "Weekly"}))

    result = run("churn", "explain", "--record", f"@{tmp_path / 'r.json'}", env=night["env"])

    assert result.returncode == 3
    (message,) = errors(result)
    # "Weekly" is no refusal under the default `unknown: missing` (it is scored as missing): only the absent fields are.
    assert "monthly_charges: missing" in message and "support_calls: missing" in message and "contract" not in message


def test_explain_wants_a_customer_or_a_record() -> None:
    result = run("churn", "explain")

    assert result.returncode == 3 and "CUSTOMER_ID" in errors(result)[0]
