"""Thousands of hostile requests at the app in process: never a 5xx, always a JSON error.

Two sources: schemathesis (positive and negative cases from serve/openapi.yaml, every
operation, through the WSGI app) and hypothesis-built requests (any bytes, any content type,
any Accept, hostile JSON/CSV/JSON lines). Raw HTTP against the real server (framing, the
buffering front, gunicorn's parser) is fuzzed in tests/integration/test_fuzz_serve.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from churn.adapters.model_format import LoadedModel
from churn.invocations import ServingOptions
from churn.params import Params
from churn_serve.app import create_app
from churn_serve.metrics import Metrics
from churn_serve.model_holder import ModelHolder

RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
# Examples per (operation, mode): scoring routes get the most; the rest are GETs without inputs.
BUDGET = {("POST", "/invocations"): 300, ("POST", "/predict"): 120}
OTHERS = 30


class Directory:
    """The test model as a directory source would give it."""

    description = "test model"
    pollable = False

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def latest(self) -> str | None:
        return "directory"

    def load(self) -> LoadedModel:
        return self.model

    def release(self, model: LoadedModel) -> None:
        pass


@pytest.fixture(scope="module")
def app(loaded_model: LoadedModel, params: Params) -> Flask:
    holder = ModelHolder(Directory(loaded_model), poll_seconds=0)
    assert holder.refresh()
    return create_app(holder, ServingOptions.from_params(params), Metrics())


def check(status: int, mimetype: str, text: str) -> None:
    """No 5xx; every refusal is our JSON error."""
    assert status < 500, (status, text[:300])
    assert "Traceback" not in text
    if status >= 400:
        assert mimetype == "application/json", (status, mimetype)
        body = json.loads(text)
        assert body["error"] and body["message"], body


@pytest.fixture(scope="module")
def schema(app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.yaml", app)


def cases() -> list[tuple[str, str, GenerationMode]]:
    """Negative cases need something to break: only operations with parameters or a body have them."""
    from pathlib import Path

    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "serve" / "openapi.yaml").read_text())
    return [
        (method.upper(), path, mode)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or operation.get("parameters") or operation.get("requestBody")
    ]


@pytest.mark.parametrize("method, path, mode", cases(), ids=lambda v: getattr(v, "value", v))
def test_schemathesis_cases_never_get_a_server_error(schema: Any, method: str, path: str,
                                                     mode: GenerationMode) -> None:
    operation = schema[path][method]
    calls = []

    @settings(FUZZ, max_examples=BUDGET.get((method, path), OTHERS))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call()
        calls.append(response.status_code)
        check(response.status_code, response.headers.get("content-type", [""])[0].split(";")[0], response.text)

    run()
    assert calls, "no request was sent"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
FIELDS = [*RECORD, "customer_id", "instances", "dataframe_split", "dataframe_records", "columns", "data"]
RECORDS = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES | st.sampled_from(list(RECORD.values())), max_size=12)
TEXT_VALUES = st.sampled_from(["", " ", "nan", "inf", "-1", "1e999", "Yes", "No", "DSL", "Two year", "12", "x,y",
                               '"quoted"', "\x00", "\u2028", "é"])


@st.composite
def hostile_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str], str]:
    kind = draw(st.sampled_from(["json", "csv", "jsonlines", "bytes", "records", "near_valid"]))
    if kind == "near_valid":  # mostly valid records with a field or two spoiled (or not)
        spoil = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES | TEXT_VALUES, max_size=2)
        one = spoil.map(lambda s: {**RECORD, **s})
        body = json.dumps(draw(st.one_of(one, st.lists(one, min_size=1, max_size=4)))).encode()
    elif kind == "json":
        body = json.dumps(draw(JSON_VALUES)).encode()
    elif kind == "records":
        body = json.dumps(draw(st.one_of(RECORDS, st.lists(RECORDS, max_size=5),
                                         st.fixed_dictionaries({"instances": st.lists(RECORDS, max_size=5)})))).encode()
    elif kind == "csv":
        width = draw(st.integers(0, 12))
        header = draw(st.booleans())
        rows = draw(st.lists(st.lists(TEXT_VALUES | st.text(max_size=8), min_size=width, max_size=width), max_size=5))
        lines = ([",".join(list(RECORD)[:width])] if header else []) + [",".join(r) for r in rows]
        body = "\n".join(lines).encode("utf-8", "surrogatepass")
    elif kind == "jsonlines":
        body = "\n".join(json.dumps(r) for r in draw(st.lists(RECORDS, max_size=5))).encode()
    else:
        body = draw(st.binary(max_size=300))
    headers = {}
    for name, values in (
        ("Content-Type", [None, "application/json", "text/csv", "application/jsonlines",
                          "application/json; charset=latin-1", "text/csv; charset=utf-16", "application/x-ndjson",
                          "text/plain", "multipart/form-data", "*/*", ";;"]),
        ("Accept", [None, "*/*", "text/csv", "application/jsonlines", "text/html", "application/json;q=0",
                    "text/csv;q=abc", "", ",,,"]),
        ("Content-Encoding", [None, None, "identity", "gzip", ""]),
        ("X-Churn-Reasons", [None, None, "2", "lots"]),
    ):
        value = draw(st.sampled_from(values))
        if value is not None:
            headers[name] = value
    route = draw(st.sampled_from(["/invocations", "/predict"])) + draw(
        st.sampled_from(["", "?reasons=true", "?reasons=3", "?reasons=-1", "?reasons=99999999", "?reasons=%00"]))
    return body, headers, route


def test_hypothesis_hostile_requests_never_get_a_server_error(app: Flask) -> None:
    sent = []
    client = app.test_client()

    @settings(FUZZ, max_examples=1000)
    @given(request=hostile_request())
    def run(request: tuple[bytes, dict[str, str], str]) -> None:
        body, headers, route = request
        response = client.post(route, data=body, headers=headers)
        sent.append(response.status_code)
        check(response.status_code, response.mimetype, response.get_data(as_text=True))

    run()
    assert len(sent) >= 900 and 200 in sent, f"{len(sent)} requests, statuses {set(sent)}"
