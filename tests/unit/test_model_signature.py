"""The logged MLflow signature matches what the model takes and returns, through mlflow.pyfunc."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from churn.model_source import LoadedModel

RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}


@pytest.fixture(scope="module")
def pyfunc(model_dir: Path) -> Any:
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.load_model(str(model_dir))


def test_the_signature_declares_ints_as_long_and_the_output_as_n_by_2(pyfunc: Any) -> None:
    inputs = {spec.name: (spec.type.name if hasattr(spec.type, "name") else str(spec.type), spec.required)
              for spec in pyfunc.metadata.get_input_schema().inputs}
    assert inputs["tenure"] == ("long", True) and inputs["support_calls"] == ("long", True)
    assert inputs["monthly_charges"] == ("double", True) and inputs["total_charges"] == ("double", True)
    assert inputs["contract"] == ("string", True)
    (output,) = pyfunc.metadata.get_output_schema().inputs
    assert output.shape == (-1, 2) and output.type == np.dtype("float64")


def test_int_float_and_missing_values_predict_the_pipeline_probabilities(
    pyfunc: Any, loaded_model: LoadedModel
) -> None:
    frame = pd.DataFrame([RECORD, {**RECORD, "tenure": 2, "total_charges": None}, {**RECORD, "monthly_charges": 20.5}])
    assert frame["tenure"].dtype == np.int64 and frame["total_charges"].isna().iloc[1]

    answer = np.asarray(pyfunc.predict(frame))

    assert answer.shape == (3, 2)
    assert np.allclose(answer.sum(axis=1), 1.0)
    expected = loaded_model.trained.predict_proba(frame.astype({"tenure": float, "support_calls": float}))
    assert np.allclose(answer[:, 1], expected, atol=1e-12)


def test_json_input_as_mlflow_serve_parses_it_is_accepted(pyfunc: Any) -> None:
    body = json.dumps({"dataframe_records": [RECORD, {**RECORD, "total_charges": None}]})
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    answer = np.asarray(pyfunc.predict(infer_and_parse_data(json.loads(body), pyfunc.metadata.get_input_schema())))
    assert answer.shape == (2, 2)


def test_the_input_example_obeys_the_signature(pyfunc: Any, model_dir: Path) -> None:
    example = json.loads((model_dir / "serving_input_example.json").read_text())
    rows = example["dataframe_split"]
    frame = pd.DataFrame(rows["data"], columns=rows["columns"])
    assert np.asarray(pyfunc.predict(frame)).shape == (len(frame), 2)


def test_a_float_in_an_integer_feature_is_refused_by_the_signature_not_deep_in_sklearn(pyfunc: Any) -> None:
    with pytest.raises(MlflowException, match="tenure"):
        pyfunc.predict(pd.DataFrame([{**RECORD, "tenure": 31.5}]))
