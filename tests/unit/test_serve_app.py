"""The HTTP contract in process: `create_app(...)` and Flask's test client, no server and no sockets.

What only a real server shows (workers, the buffering front, drain, metrics across processes)
is in tests/integration/test_serve_*.py.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from churn.adapters.model_format import LoadedModel
from churn.invocations import ServingOptions
from churn.model import to_frame
from churn.params import Params
from churn.validation import validate
from churn_serve import model_holder
from churn_serve.app import create_app
from churn_serve.metrics import Metrics
from churn_serve.model_holder import ModelHolder

RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}
FEATURES = list(RECORD)
SIX_MIB = 6 * 1024 * 1024


class Registry:
    """A model source whose production version the test sets (None: nothing promoted yet)."""

    description = "models:/churn@production at http://mlflow.example:5000"
    pollable = True

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.version: str | None = None

    def latest(self) -> str | None:
        return self.version

    def load(self) -> LoadedModel:
        return dataclasses.replace(self.model, version=self.version or "")

    def release(self, model: LoadedModel) -> None:
        pass


def build(registry: Registry, params: Params) -> tuple[Flask, ModelHolder, Metrics]:
    metrics = Metrics()
    holder = ModelHolder(registry, poll_seconds=0)
    return create_app(holder, ServingOptions.from_params(params), metrics), holder, metrics


@pytest.fixture(scope="module")
def served(loaded_model: LoadedModel, params: Params) -> tuple[Flask, Metrics]:
    registry = Registry(loaded_model)
    registry.version = "7"
    app, holder, metrics = build(registry, params)
    assert holder.refresh()
    return app, metrics


@pytest.fixture
def client(served: tuple[Flask, Metrics]) -> Iterator[FlaskClient]:
    with served[0].test_client() as c:
        yield c


def post(client: FlaskClient, body: Any, content_type: str = "application/json", **kwargs: Any) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/invocations", data=data, content_type=content_type, **kwargs)


def expected(model: LoadedModel, records: list[dict[str, Any]]) -> np.ndarray:
    schema = model.compiled.schema
    clean = validate([{**r, "customer_id": str(i)} for i, r in enumerate(records)], schema).clean
    return model.trained.predict_proba(to_frame(clean, schema))


def assert_json_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error and body["message"], body
    assert "Traceback" not in response.get_data(as_text=True)
    return dict(body)


# -- readiness and liveness --------------------------------------------------------------------------


def test_ping_is_503_until_a_model_is_promoted_while_live_stays_200(loaded_model: LoadedModel,
                                                                     params: Params) -> None:
    registry = Registry(loaded_model)
    app, holder, _ = build(registry, params)
    client = app.test_client()
    assert not holder.refresh()
    assert_json_error(client.get("/ping"), 503, "model_not_ready")
    assert_json_error(post(client, RECORD), 503, "model_not_ready")
    assert_json_error(client.get("/version"), 503, "model_not_ready")
    live = client.get("/live")
    assert live.status_code == 200 and live.get_json() == {"live": True, "model_loaded": False}

    registry.version = "1"
    assert holder.refresh()
    ping = client.get("/ping")
    assert ping.status_code == 200 and ping.data == b""
    assert client.get("/live").get_json() == {"live": True, "model_loaded": True}


def test_no_model_yet_is_a_warning_naming_the_polled_uri_not_repeated_at_every_poll(
    loaded_model: LoadedModel, params: Params, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(loaded_model)
    _, holder, _ = build(registry, params)
    with caplog.at_level(logging.INFO, logger="churn.serve"):
        for _ in range(5):
            holder.refresh()
    warned = [r for r in caplog.records if "no model to serve yet" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert vars(warned[0])["source"] == registry.description

    monkeypatch.setattr(model_holder, "NO_MODEL_LOG_SECONDS", 0.0)  # as if five minutes had passed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="churn.serve"):
        holder.refresh()
    [again] = [r for r in caplog.records if "no model to serve yet" in r.getMessage()]
    assert again.levelno == logging.WARNING and vars(again)["polls"] == 6


def test_version_names_the_model(client: FlaskClient) -> None:
    body = client.get("/version").get_json()
    assert body["model_name"] == "churn" and body["model_version"] == "7" and "run_id" in body
    assert client.get("/model").get_json()["model_version"] == "7"


def test_openapi_description_is_served_and_lists_every_route(client: FlaskClient, served: tuple[Flask, Metrics]
                                                             ) -> None:
    spec = yaml.safe_load(client.get("/openapi.yaml").data)
    routes = {rule.rule for rule in served[0].url_map.iter_rules() if rule.endpoint != "static"}
    assert routes == set(spec["paths"])


# -- bodies and answers -------------------------------------------------------------------------------


def test_seed_request_gets_seed_answer_on_both_routes(client: FlaskClient, loaded_model: LoadedModel) -> None:
    for route in ("/invocations", "/predict"):
        response = client.post(route, json=RECORD)
        assert response.status_code == 200, response.data
        body = response.get_json()
        assert set(body) == {"prediction", "probability", "risk_band"}
        assert body["probability"] == pytest.approx(expected(loaded_model, [RECORD])[0], abs=1e-9)
        assert response.headers["X-Model-Version"] == "7"


def csv_body(records: list[dict[str, Any]], header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(FEATURES)
    writer.writerows([[r[f] for f in FEATURES] for r in records])
    return out.getvalue()


RECORDS = [{**RECORD, "tenure": t, "contract": c}
           for t, c in ((1, "Month-to-month"), (24, "One year"), (60, "Two year"))]
ROWS = [[r[f] for f in FEATURES] for r in RECORDS]
BODIES: dict[str, tuple[str, Any]] = {
    "json list": ("application/json", RECORDS),
    "json instances": ("application/json", {"instances": RECORDS}),
    "json dataframe_records": ("application/json", {"dataframe_records": RECORDS}),
    "json dataframe_split": ("application/json", {"dataframe_split": {"columns": FEATURES, "data": ROWS}}),
    "csv with header": ("text/csv", csv_body(RECORDS, header=True)),
    "csv without header": ("text/csv", csv_body(RECORDS, header=False)),
    "json lines": ("application/jsonlines", "\n".join(json.dumps(r) for r in RECORDS)),
}


def probabilities(response: Any) -> list[float]:
    text = response.get_data(as_text=True)
    if response.mimetype == "application/json":
        return [p["probability"] for p in json.loads(text)["predictions"]]
    if response.mimetype == "text/csv":
        return [float(r["probability"]) for r in csv.DictReader(io.StringIO(text))]
    assert response.mimetype == "application/jsonlines"
    return [json.loads(line)["probability"] for line in text.splitlines()]


@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/jsonlines"])
@pytest.mark.parametrize("shape", list(BODIES))
def test_every_body_type_answers_in_every_accept_type(client: FlaskClient, loaded_model: LoadedModel,
                                                      shape: str, accept: str) -> None:
    content_type, body = BODIES[shape]
    response = post(client, body, content_type, headers={"Accept": accept})
    assert response.status_code == 200, response.data
    assert response.mimetype == accept
    np.testing.assert_allclose(probabilities(response), expected(loaded_model, RECORDS), atol=1e-9, rtol=0)


@pytest.mark.parametrize("how", ["query", "header", "sagemaker"])
def test_reasons_are_given_when_asked(client: FlaskClient, how: str) -> None:
    asked: dict[str, Any] = {
        "query": {"query_string": {"reasons": "2"}},
        "header": {"headers": {"X-Churn-Reasons": "2"}},
        "sagemaker": {"headers": {"X-Amzn-SageMaker-Custom-Attributes": "trace=1,reasons=2"}},
    }[how]
    reasons = post(client, RECORD, **asked).get_json()["reasons"]
    assert [set(r) for r in reasons] == [{"feature", "value", "contribution"}] * 2
    assert "reasons" not in post(client, RECORD).get_json()


# -- refusals -------------------------------------------------------------------------------------------


def test_an_invalid_record_is_400_naming_row_and_field(client: FlaskClient) -> None:
    body = assert_json_error(post(client, [RECORD, {**RECORD, "payment_method": 7.5}]), 400, "invalid_record")
    assert (body["row"], body["field"], body["reason"]) == (1, "payment_method", "wrong_type")


def test_an_unseen_category_is_scored_and_echoed_not_refused(client: FlaskClient) -> None:
    """`unknown: missing` (the default): "Cash" was a 400 unknown_category before the policy existed."""
    response = post(client, [RECORD, {**RECORD, "payment_method": "Cash"}])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [p.get("unseen_categories") for p in response.get_json()["predictions"]] == [None, ["payment_method"]]


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"{not json", "application/json", 400, "invalid_input"),
    (b"[]", "application/json", 400, "invalid_input"),
    (b'{"tenure": NaN}', "application/json", 400, "invalid_input"),
    (b'{"tenure": Infinity}', "application/json", 400, "invalid_record"),
    (b"a,b,c\n", "text/csv", 400, "invalid_input"),
    (b"x=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"<xml/>", "application/xml", 415, "unsupported_media_type"),
])
def test_bad_requests_get_json_errors(client: FlaskClient, body: bytes, content_type: str, status: int,
                                      code: str) -> None:
    assert_json_error(post(client, body, content_type), status, code)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip"])
def test_a_compressed_body_is_415_naming_the_encoding(client: FlaskClient, encoding: str) -> None:
    import gzip

    response = post(client, gzip.compress(json.dumps(RECORD).encode()), headers={"Content-Encoding": encoding})
    body = assert_json_error(response, 415, "unsupported_media_type")
    assert body["encoding"] == encoding and encoding in body["message"]


def test_identity_encoding_is_the_plain_body(client: FlaskClient) -> None:
    assert post(client, RECORD, headers={"Content-Encoding": "identity"}).status_code == 200


def test_unacceptable_accept_is_406(client: FlaskClient) -> None:
    assert_json_error(post(client, RECORD, headers={"Accept": "text/html"}), 406, "not_acceptable")


def test_too_many_rows_is_413(client: FlaskClient) -> None:
    assert_json_error(post(client, [RECORD] * 10_001), 413, "too_many_rows")


def test_a_body_over_6_mib_is_413_by_content_length(client: FlaskClient) -> None:
    assert_json_error(post(client, b" " * (SIX_MIB + 1)), 413, "payload_too_large")


def test_a_chunked_body_over_6_mib_is_413_while_reading(client: FlaskClient) -> None:
    # No Content-Length: the view counts what it reads (gunicorn marks such input as terminated).
    response = client.post("/invocations", input_stream=io.BytesIO(b" " * (SIX_MIB + 1)),
                           headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert_json_error(response, 413, "payload_too_large")


def test_a_body_of_exactly_6_mib_is_read(client: FlaskClient) -> None:
    body = json.dumps(RECORD).encode()
    assert post(client, body + b" " * (SIX_MIB - len(body))).status_code == 200


def test_unknown_routes_and_methods_answer_json(client: FlaskClient) -> None:
    assert_json_error(client.get("/nowhere"), 404, "not_found")
    wrong = assert_json_error(client.get("/invocations"), 405, "method_not_allowed")
    assert wrong and "POST" in client.get("/invocations").headers["Allow"]


def test_a_bug_is_a_500_json_without_the_traceback(loaded_model: LoadedModel, params: Params,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(loaded_model)
    app, holder, _ = build(registry, params)

    def broken() -> Any:
        raise RuntimeError("secret detail")

    holder.current = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="churn.serve"):
        response = app.test_client().get("/ping")
    body = assert_json_error(response, 500, "internal_error")
    assert "secret detail" not in json.dumps(body)
    assert any(r.exc_info for r in caplog.records), "the traceback must be logged"


def test_every_answer_is_counted_by_route_and_status(served: tuple[Flask, Metrics], client: FlaskClient) -> None:
    metrics = served[1]

    def count(route: str, status: str) -> float:
        value = metrics.registry.get_sample_value("churn_http_requests_total",
                                                  {"route": route, "method": "POST", "status": status})
        return value or 0.0

    before = (count("/invocations", "200"), count("/invocations", "400"), count("other", "405"))
    post(client, RECORD)
    post(client, b"{")
    client.post("/ping")
    after = (count("/invocations", "200"), count("/invocations", "400"), count("other", "405"))
    assert after == (before[0] + 1, before[1] + 1, before[2])
    assert metrics.registry.get_sample_value("churn_http_requests_total",
                                             {"route": "/ping", "method": "POST", "status": "405"}) >= 1


def test_probabilities_observed_at_once_fill_the_buckets_as_one_by_one() -> None:
    from prometheus_client import CollectorRegistry

    from churn_serve.metrics import PROBABILITY_BUCKETS, BatchHistogram

    values = np.concatenate([np.random.default_rng(3).random(500), np.array(PROBABILITY_BUCKETS), [0.0, 0.1 + 1e-12]])
    at_once = BatchHistogram("at_once", "x", buckets=PROBABILITY_BUCKETS, registry=CollectorRegistry())
    one_by_one = BatchHistogram("one_by_one", "x", buckets=PROBABILITY_BUCKETS, registry=CollectorRegistry())
    at_once.observe_many(values)
    for value in values.tolist():
        one_by_one.observe(value)

    def samples(h: BatchHistogram) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name.rsplit("_", 1)[-1], s.labels, s.value) for m in h.collect() for s in m.samples
                if not s.name.endswith("_created")]

    got, expected = samples(at_once), samples(one_by_one)
    assert [s[:2] for s in got] == [s[:2] for s in expected]
    np.testing.assert_allclose([s[2] for s in got], [s[2] for s in expected], rtol=1e-12)
