"""Thousands of hostile requests at the real server: never a 5xx, always a JSON error, still alive after.

Two sources: schemathesis (positive and negative cases from serve/openapi.yaml, every
operation) and hypothesis-built raw requests (any bytes, any content type, any Accept,
hostile JSON/CSV/JSON lines).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from serve_harness import RECORD, ServeProcess, start_serve

OPENAPI = Path(__file__).resolve().parents[2] / "serve" / "openapi.yaml"
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
# Examples per (operation, mode): scoring routes get the most; the rest are GETs without inputs.
BUDGET = {("POST", "/invocations"): 300, ("POST", "/predict"): 120}
OTHERS = 30


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = start_serve(tmp_path_factory.mktemp("serve-fuzz"), model_dir, workers=2)
    try:
        process.ready(workers=2)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def check(response: Any) -> None:
    """No 5xx; every refusal is our JSON error (gunicorn's own 400s for broken HTTP are plain)."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["error"] and body["message"], body


SCHEMA = schemathesis.openapi.from_path(OPENAPI)
# Negative cases need something to break: only operations with parameters or a body have them.
CASES = [
    (method.upper(), path, mode)
    for path, methods in SCHEMA.raw_schema["paths"].items()
    for method, spec in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or spec.get("parameters") or spec.get("requestBody")
]


@pytest.mark.parametrize("method, path, mode", CASES, ids=lambda v: getattr(v, "value", v))
def test_schemathesis_cases_never_get_a_server_error(server: ServeProcess, session: requests.Session, method: str,
                                                     path: str, mode: GenerationMode) -> None:
    operation = SCHEMA[path][method]
    calls = []

    @settings(FUZZ, max_examples=BUDGET.get((method, path), OTHERS))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, session=session, timeout=30)
        calls.append(response.status_code)
        check(response)

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
def hostile_request(draw: st.DrawFn) -> tuple[bytes, str | None, str | None, str]:
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
    content_type = draw(st.sampled_from([None, "application/json", "text/csv", "application/jsonlines",
                                         "application/json; charset=latin-1", "text/csv; charset=utf-16",
                                         "application/x-ndjson", "text/plain", "multipart/form-data", "*/*", ";;"]))
    accept = draw(st.sampled_from([None, "*/*", "text/csv", "application/jsonlines", "text/html",
                                   "application/json;q=0", "text/csv;q=abc", "", ",,,"]))
    route = draw(st.sampled_from(["/invocations", "/predict"])) + draw(
        st.sampled_from(["", "?reasons=true", "?reasons=3", "?reasons=-1", "?reasons=99999999", "?reasons=%00"]))
    return body, content_type, accept, route


def test_hypothesis_hostile_requests_never_get_a_server_error(server: ServeProcess, session: requests.Session) -> None:
    sent = []

    @settings(FUZZ, max_examples=1000)
    @given(request=hostile_request())
    def run(request: tuple[bytes, str | None, str | None, str]) -> None:
        body, content_type, accept, route = request
        headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None}
        response = session.post(server.url + route, data=body, headers=headers, timeout=30)
        sent.append(response.status_code)
        check(response)

    run()
    assert len(sent) >= 900 and 200 in sent, f"{len(sent)} requests, statuses {set(sent)}"


def test_broken_http_gets_no_server_error_and_the_server_survives(server: ServeProcess) -> None:
    garbage = [b"\x00\x01\x02\r\n\r\n", b"POST /invocations HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
               b"POST /invocations HTTP/1.1\r\nContent-Length: 10\r\n\r\nab",  # then hang up
               b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", b"POST /invocations HTTP/9.9\r\n\r\n",
               b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    for raw in garbage:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except OSError:
                pass
        assert not answer.startswith(b"HTTP/1.1 5"), (raw[:60], answer[:200])


def test_after_the_fuzzing_the_server_is_alive_and_logged_no_unhandled_error(server: ServeProcess) -> None:
    assert server.get("/ping").status_code == 200
    assert server.post("/invocations", RECORD).status_code == 200
    metrics = server.get("/metrics").text
    # 503 is /ping while the model loaded; any other 5xx would be a bug.
    assert not [line for line in metrics.splitlines() if line.startswith("churn_http_requests_total")
                and 'status="5' in line and 'status="503"' not in line]
    assert "unhandled error" not in server.log()
