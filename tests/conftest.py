"""Shared fixtures: parameters, generated customers and one small trained model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from churn import generator, training  # noqa: E402
from churn.adapters import model_format  # noqa: E402
from churn.model import to_frame  # noqa: E402
from churn.params import Params, load_params  # noqa: E402
from churn.validation import validate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params() -> Params:
    """The repository's params.yaml with a small tree cap, one thread and no search (tests run beside
    servers; the search has its own tests in test_tuning.py)."""
    return load_params(REPO / "params.yaml").with_overrides(
        {"n_estimators": "60", "model.n_jobs": "1", "tuning.enabled": "false"}
    )


@pytest.fixture(scope="session")
def customers() -> pa.Table:
    """5,000 clean, labelled generated customers (with true_probability)."""
    config = generator.GeneratorConfig(n_customers=5_000, seed=7)
    return pa.concat_tables(generator.generate(config))


@pytest.fixture(scope="session")
def splits(customers: pa.Table, params: Params) -> training.Splits:
    clean = validate(customers, params.schema, require_label=True).clean
    return training.split(clean, params)


@pytest.fixture(scope="session")
def outcome(splits: training.Splits, params: Params) -> training.TrainingOutcome:
    return training.train(params, splits.train, splits.valid)


@pytest.fixture(scope="session")
def model_dir(outcome: training.TrainingOutcome, splits: training.Splits, params: Params,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model saved in MLflow format, as /opt/ml/model would hold it."""
    path = tmp_path_factory.mktemp("model") / "model"
    model_format.save(outcome.model, path, to_frame(splits.valid, params.schema),
                      {"reference_profile": outcome.reference_profile, "data_hash": "test"})
    return path


@pytest.fixture(scope="session")
def loaded_model(model_dir: Path) -> model_format.LoadedModel:
    return model_format.load(model_dir)


@pytest.fixture
def other_columns_schema() -> dict:
    """A params.yaml `schema:` for a table with other column names (id user_id, label left)."""
    return {
        "id_field": "user_id",
        "label_field": "left",
        "revenue_field": "spend",
        "features": [
            {"name": "age", "type": "int", "min": 18, "max": 120},
            {"name": "plan", "type": "category", "values": ["basic", "pro", "team"]},
            {"name": "spend", "type": "float", "min": 0, "nullable": True},
        ],
    }
