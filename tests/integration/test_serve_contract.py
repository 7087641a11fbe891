"""The real gunicorn server on the SageMaker contract: ping, every body and answer type, every refusal."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from serve_harness import RECORD, ServeProcess, start_serve

from churn.adapters.model_format import LoadedModel
from churn.model import to_frame
from churn.validation import validate

SIX_MIB = 6 * 1024 * 1024
FEATURES = list(RECORD)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Two workers serving the test model from SAGEMAKER_BASE_DIR/model."""
    process = start_serve(tmp_path_factory.mktemp("serve"), model_dir, workers=2)
    try:
        process.ready(workers=2)
        yield process
    finally:
        process.stop()


def expected(model: LoadedModel, records: list[dict[str, Any]]) -> np.ndarray:
    schema = model.compiled.schema
    clean = validate([{**r, "customer_id": str(i)} for i, r in enumerate(records)], schema).clean
    return model.trained.predict_proba(to_frame(clean, schema))


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "File \"" not in text


# -- readiness ----------------------------------------------------------------------------------


def test_ping_is_503_until_the_model_loads_then_200_with_an_empty_body(model_dir: Path, tmp_path: Path) -> None:
    staged = tmp_path / "incoming"
    target = tmp_path / "model"
    server = start_serve(tmp_path / "base", workers=1, CHURN_MODEL_URI=str(target), MODEL_POLL_SECONDS="0.2")
    try:
        server.listening()
        before = server.get("/ping")
        assert before.status_code == 503 and before.json()["error"] == "model_not_ready"
        assert server.post("/invocations", RECORD).status_code == 503
        assert server.get("/version").status_code == 503
        import shutil

        shutil.copytree(model_dir, staged)
        os.rename(staged, target)  # appears whole, as a mounted model does
        server.ready(timeout=60, workers=1)
        started = time.monotonic()
        after = server.get("/ping")
        assert after.status_code == 200 and after.content == b""
        assert time.monotonic() - started < 2
    finally:
        server.stop()


def test_version_names_the_model(server: ServeProcess) -> None:
    body = server.get("/version").json()
    assert body["model_name"] == "churn" and body["model_version"] and "run_id" in body
    assert server.get("/model").json()["model_version"] == body["model_version"]


def test_openapi_description_is_served(server: ServeProcess) -> None:
    spec = yaml.safe_load(server.get("/openapi.yaml").text)
    assert {"/ping", "/invocations", "/predict", "/metrics"} <= set(spec["paths"])


# -- bodies and answers ---------------------------------------------------------------------------


def test_seed_request_gets_seed_answer_on_both_routes(server: ServeProcess, loaded_model: LoadedModel) -> None:
    for route in ("/invocations", "/predict"):
        response = server.post(route, RECORD)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["prediction"] in ("Churn", "No Churn")
        assert body["probability"] == pytest.approx(expected(loaded_model, [RECORD])[0], abs=1e-9)
        assert response.headers["X-Model-Version"]


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


def parse_answer(response: Any) -> list[float]:
    kind = response.headers["Content-Type"].split(";")[0]
    if kind == "application/json":
        return [p["probability"] for p in response.json()["predictions"]]
    if kind == "text/csv":
        return [float(r["probability"]) for r in csv.DictReader(io.StringIO(response.text))]
    assert kind == "application/jsonlines"
    return [json.loads(line)["probability"] for line in response.text.splitlines()]


@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/jsonlines"])
@pytest.mark.parametrize("shape", list(BODIES))
def test_every_body_type_answers_in_every_accept_type(server: ServeProcess, loaded_model: LoadedModel,
                                                      shape: str, accept: str) -> None:
    content_type, body = BODIES[shape]
    response = server.post("/invocations", body, content_type, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == accept
    np.testing.assert_allclose(parse_answer(response), expected(loaded_model, RECORDS), atol=1e-9, rtol=0)


@pytest.mark.parametrize("how", ["query", "header", "sagemaker"])
def test_reasons_are_given_when_asked(server: ServeProcess, how: str) -> None:
    options: dict[str, Any] = {
        "query": {"params": {"reasons": "2"}},
        "header": {"headers": {"X-Churn-Reasons": "2"}},
        "sagemaker": {"headers": {"X-Amzn-SageMaker-Custom-Attributes": "trace=1,reasons=2"}},
    }[how]
    reasons = server.post("/invocations", RECORD, **options).json()["reasons"]
    assert [set(r) for r in reasons] == [{"feature", "value", "contribution"}] * 2
    assert "reasons" not in server.post("/invocations", RECORD).json()


def test_keep_alive_connections_stay_open_and_do_not_stall(server: ServeProcess) -> None:
    """Nagle + delayed ACK would add ~40 ms to each keep-alive answer; gthread + TCP_NODELAY must not."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps(RECORD)
    latencies, sockets = [], set()
    for _ in range(60):
        started = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200 and response.getheader("Connection", "keep-alive") != "close"
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1, "the server closed a keep-alive connection"
    assert statistics.median(latencies) < 0.02, f"keep-alive median {statistics.median(latencies) * 1000:.1f} ms"


# -- refusals ---------------------------------------------------------------------------------------


def test_an_invalid_record_is_400_naming_row_and_field(server: ServeProcess) -> None:
    response = server.post("/invocations", [RECORD, {**RECORD, "payment_method": "Cash"}])
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["row"], body["field"], body["reason"]) == (
        "invalid_record", 1, "payment_method", "unknown_category")


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"{not json", "application/json", 400, "invalid_input"),
    (b"[]", "application/json", 400, "invalid_input"),
    (b'{"tenure": NaN}', "application/json", 400, "invalid_input"),
    (b'{"tenure": Infinity}', "application/json", 400, "invalid_record"),
    (b"a,b,c\n", "text/csv", 400, "invalid_input"),
    (b"x=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"<xml/>", "application/xml", 415, "unsupported_media_type"),
])
def test_bad_requests_get_json_errors_not_tracebacks(server: ServeProcess, body: bytes, content_type: str,
                                                    status: int, code: str) -> None:
    response = server.post("/invocations", body, content_type)
    assert response.status_code == status
    assert response.json()["error"] == code and response.json()["message"]
    assert_no_traceback(response.text)


def test_unacceptable_accept_is_406(server: ServeProcess) -> None:
    response = server.post("/invocations", RECORD, headers={"Accept": "text/html"})
    assert response.status_code == 406 and response.json()["error"] == "not_acceptable"


def test_too_many_rows_is_413(server: ServeProcess) -> None:
    response = server.post("/invocations", [RECORD] * 10_001)
    assert response.status_code == 413 and response.json()["error"] == "too_many_rows"


def test_a_body_over_6_mib_is_413_by_content_length(server: ServeProcess) -> None:
    response = server.post("/invocations", b" " * (SIX_MIB + 1))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert server.post("/invocations", RECORD).status_code == 200


def test_a_chunked_body_over_6_mib_is_413_while_reading(server: ServeProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(7):
            yield b" " * (1024 * 1024)

    response = server.post("/invocations", chunks())
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_a_body_of_exactly_6_mib_is_read(server: ServeProcess) -> None:
    body = json.dumps(RECORD).encode()
    padded = body + b" " * (SIX_MIB - len(body))
    assert server.post("/invocations", padded).status_code == 200


def test_unknown_routes_and_methods_answer_json(server: ServeProcess) -> None:
    missing = server.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = server.get("/invocations")
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]


def test_the_master_stays_single_threaded_so_forking_workers_is_safe(server: ServeProcess) -> None:
    """pyarrow's jemalloc thread in a forking master deadlocked a worker once: the master must not import it."""
    threads = list(Path(f"/proc/{server.process.pid}/task").iterdir())
    assert len(threads) == 1, [t.joinpath("comm").read_text().strip() for t in threads]
