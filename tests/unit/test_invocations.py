"""The pure /invocations function: request shapes in, answer shapes out, every refusal named."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unknown_policy import rejecting_model

from churn import answers
from churn.adapters.model_format import LoadedModel
from churn.errors import (
    ChurnError,
    InvalidInput,
    InvalidRecord,
    NotAcceptable,
    PayloadTooLarge,
    TooManyRows,
    UnsupportedMediaType,
    mapping_for,
)
from churn.invocations import ServingOptions, invocations, reasons_wanted
from churn.model import to_frame
from churn.params import Params
from churn.serving_model import ServingModel, probe_records, unseen_value
from churn.validation import validate

JSON = "application/json"
RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}
FEATURES = list(RECORD)


@pytest.fixture(scope="module")
def model(loaded_model: LoadedModel) -> ServingModel:
    return ServingModel.prepare(loaded_model)


@pytest.fixture(scope="module")
def rejecting(loaded_model: LoadedModel) -> ServingModel:
    """The same model with its categories under `unknown: reject` (the behaviour before the policy)."""
    return ServingModel.prepare(rejecting_model(loaded_model))


@pytest.fixture(scope="module")
def options(params: Params) -> ServingOptions:
    return ServingOptions.from_params(params)


def call(model: ServingModel, options: ServingOptions, body: Any, content_type: str | None = JSON,
         accept: str | None = None, reasons: int = 0) -> tuple[Any, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = invocations(raw, content_type, accept, model, options, reasons)
    if answer.content_type.split(";")[0] == JSON:
        return json.loads(answer.body), answer.content_type
    return answer.body.decode(), answer.content_type


def refusal(model: ServingModel, options: ServingOptions, body: Any, content_type: str | None = JSON,
            accept: str | None = None) -> ChurnError:
    with pytest.raises(ChurnError) as caught:
        call(model, options, body, content_type, accept)
    return caught.value


def reference(model: ServingModel, records: list[dict[str, Any]]) -> np.ndarray:
    """The sklearn Pipeline's probabilities for the same records."""
    schema = model.schema
    filled = [{**r, schema.id_field: str(i)} for i, r in enumerate(records)]
    clean = validate(filled, schema).clean
    return model.loaded.trained.predict_proba(to_frame(clean, schema))


# -- answers ---------------------------------------------------------------------------------------


def test_one_object_gets_the_seeds_answer_shape(model: ServingModel, options: ServingOptions) -> None:
    answer, content_type = call(model, options, RECORD)
    assert content_type == JSON
    assert set(answer) == {"prediction", "probability", "risk_band"}
    assert answer["probability"] == pytest.approx(reference(model, [RECORD])[0], abs=1e-9)
    churn = answer["probability"] >= model.loaded.compiled.threshold
    assert answer["prediction"] == ("Churn" if churn else "No Churn")


def test_risk_band_follows_the_scoring_bands(model: ServingModel, options: ServingOptions) -> None:
    records = [{**RECORD, "tenure": t, "contract": c} for t in (0, 5, 40, 70) for c in ("Month-to-month", "Two year")]
    answer, _ = call(model, options, records)
    for item in answer["predictions"]:
        expected = next(name for name, low in options.scoring.bands if item["probability"] >= low)
        assert item["risk_band"] == expected


def test_customer_id_is_echoed_only_when_given(model: ServingModel, options: ServingOptions) -> None:
    answer, _ = call(model, options, [{**RECORD, "customer_id": "C-7"}, RECORD, {**RECORD, "customer_id": 12}])
    ids = [item.get("customer_id") for item in answer["predictions"]]
    assert ids == ["C-7", None, "12"]


@pytest.mark.parametrize("envelope", [
    lambda rs: rs,
    lambda rs: {"instances": rs},
    lambda rs: {"dataframe_records": rs},
    lambda rs: {"dataframe_split": {"columns": FEATURES, "data": [[r[f] for f in FEATURES] for r in rs]}},
])
def test_json_batch_shapes_give_predictions_in_request_order(model: ServingModel, options: ServingOptions,
                                                               envelope: Any) -> None:
    records = [{**RECORD, "tenure": t} for t in (1, 20, 60)]
    answer, _ = call(model, options, envelope(records))
    got = [item["probability"] for item in answer["predictions"]]
    np.testing.assert_allclose(got, reference(model, records), atol=1e-9, rtol=0)


def csv_text(records: list[dict[str, Any]], header: bool, with_id: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = (["customer_id"] if with_id else []) + FEATURES
    if header:
        writer.writerow(columns)
    for i, r in enumerate(records):
        writer.writerow(([f"id{i}"] if with_id else []) + [r[f] for f in FEATURES])
    return out.getvalue().encode()


@pytest.mark.parametrize("header, with_id", [(True, False), (True, True), (False, False), (False, True)])
def test_csv_with_or_without_header_scores_the_same(model: ServingModel, options: ServingOptions,
                                                     header: bool, with_id: bool) -> None:
    records = [{**RECORD, "tenure": t, "total_charges": ""} for t in (2, 30)]
    answer, _ = call(model, options, csv_text(records, header, with_id), "text/csv")
    got = [item["probability"] for item in answer["predictions"]]
    expected = reference(model, [{**r, "total_charges": None} for r in records])
    np.testing.assert_allclose(got, expected, atol=1e-9, rtol=0)
    assert [item.get("customer_id") for item in answer["predictions"]] == (["id0", "id1"] if with_id else [None] * 2)


def test_csv_header_may_order_columns_freely(model: ServingModel, options: ServingOptions) -> None:
    columns = list(reversed(FEATURES))
    body = (",".join(columns) + "\n" + ",".join(str(RECORD[c]) for c in columns) + "\n").encode()
    answer, _ = call(model, options, body, "text/csv")
    assert answer["predictions"][0]["probability"] == pytest.approx(reference(model, [RECORD])[0], abs=1e-9)


def test_json_lines_in_and_out_keep_one_line_per_record(model: ServingModel, options: ServingOptions) -> None:
    records = [{**RECORD, "tenure": t, "customer_id": f"c{t}"} for t in (3, 4, 5)]
    body = ("\n".join(json.dumps(r) for r in records) + "\n\n").encode()
    text, content_type = call(model, options, body, "application/jsonlines", "application/jsonlines")
    assert content_type.startswith("application/jsonlines")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["customer_id"] for line in lines] == ["c3", "c4", "c5"]


def test_csv_answer_has_a_header_and_one_row_per_record(model: ServingModel, options: ServingOptions) -> None:
    records = [{**RECORD, "customer_id": "a"}, {**RECORD, "customer_id": "b", "tenure": 50}]
    text, content_type = call(model, options, records, accept="text/csv", reasons=2)
    assert content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["customer_id"] for r in rows] == ["a", "b"]
    assert set(rows[0]) >= {"prediction", "probability", "risk_band", "reason_1", "reason_2_contribution"}
    assert float(rows[1]["probability"]) == pytest.approx(reference(model, records)[1], abs=1e-9)


@pytest.mark.parametrize("accept, expected", [
    (None, "application/json"),
    ("*/*", "application/json"),
    ("text/*", "text/csv"),
    ("text/csv;q=0.5, application/jsonlines", "application/jsonlines"),
    ("text/html, text/csv", "text/csv"),
    ("application/json; charset=utf-8", "application/json"),
    ("*/*, text/csv", "text/csv"),  # the more specific type wins at equal quality
    ("application/x-ndjson", "application/jsonlines"),
    ("TEXT/CSV", "text/csv"),
])
def test_accept_chooses_the_answer_type(model: ServingModel, options: ServingOptions, accept: str | None,
                                        expected: str) -> None:
    _, content_type = call(model, options, RECORD, accept=accept)
    assert content_type.split(";")[0] == expected


def test_reasons_are_the_largest_contributions_in_order(model: ServingModel, options: ServingOptions) -> None:
    answer, _ = call(model, options, RECORD, reasons=3)
    reasons = answer["reasons"]
    assert len(reasons) == 3
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)
    compiled = model.loaded.compiled
    x = model.encoder.encode(RECORD).row  # type: ignore[union-attr]
    contributions = dict(zip(compiled.feature_order, compiled.contributions(x)[0, :-1].tolist()))
    assert max(abs(c) for c in contributions.values()) == pytest.approx(sizes[0])
    for r in reasons:
        assert r["contribution"] == pytest.approx(contributions[r["feature"]], abs=1e-9)
        assert r["value"] == RECORD[r["feature"]]


@pytest.mark.parametrize("asked, expected", [(None, 0), ("", 0), ("false", 0), ("0", 0), ("true", 3), ("2", 2),
                                             ("99", 9)])
def test_reasons_can_be_asked_by_flag_or_count(options: ServingOptions, asked: str | None, expected: int) -> None:
    assert reasons_wanted(asked, options, n_features=9) == expected


def test_reasons_refuse_garbage(options: ServingOptions) -> None:
    with pytest.raises(InvalidInput):
        reasons_wanted("lots", options, n_features=9)


# -- refusals --------------------------------------------------------------------------------------


def test_a_bad_single_record_names_row_and_field(model: ServingModel, options: ServingOptions) -> None:
    err = refusal(model, options, {**RECORD, "tenure": -3})
    assert isinstance(err, InvalidRecord) and mapping_for(err).http_status == 400
    body = err.to_dict()
    assert (body["error"], body["row"], body["field"], body["reason"]) == ("invalid_record", 0, "tenure",
                                                                           "out_of_bounds")


def test_one_bad_row_rejects_the_whole_batch_listing_every_bad_row(rejecting: ServingModel,
                                                                   options: ServingOptions) -> None:
    records = [RECORD, {**RECORD, "contract": "Weekly"}, RECORD, {**RECORD, "tenure": "many", "customer_id": "x9"}]
    body = refusal(rejecting, options, records).to_dict()
    assert body["rejected"] == 2 and body["row"] == 1 and body["field"] == "contract"
    listed = {(e["row"], e["field"], e["reason"]) for e in body["errors"]}
    assert listed == {(1, "contract", "unknown_category"), (3, "tenure", "wrong_type")}
    assert [e.get("customer_id") for e in body["errors"]] == [None, "x9"]


@pytest.mark.parametrize("value, reason", [
    (None, "missing"), ("abc", "wrong_type"), (1e999, "not_finite"), ([1], "wrong_type"), (True, "wrong_type"),
])
def test_bad_values_are_named_by_reason(model: ServingModel, options: ServingOptions, value: Any,
                                        reason: str) -> None:
    body = refusal(model, options, [{**RECORD, "monthly_charges": value}]).to_dict()
    assert (body["field"], body["reason"]) == ("monthly_charges", reason)


def test_missing_fields_are_each_listed(model: ServingModel, options: ServingOptions) -> None:
    body = refusal(model, options, {"tenure": 3}).to_dict()
    assert {e["field"] for e in body["errors"]} == set(FEATURES) - {"tenure", "total_charges"}


@pytest.mark.parametrize("body, content_type, error", [
    (b"{", JSON, InvalidInput),
    (b"[]", JSON, InvalidInput),
    (b"", JSON, InvalidInput),
    (b"42", JSON, InvalidInput),
    (b"[1, 2]", JSON, InvalidInput),
    (b'{"instances": 5}', JSON, InvalidInput),
    (b'{"instances": [], "dataframe_records": []}', JSON, InvalidInput),
    (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', JSON, InvalidInput),
    (b'{"tenure": NaN}', JSON, InvalidInput),
    (b"[" * 100_000, JSON, InvalidInput),
    (b"\xff\xfe\x00garbage", JSON, InvalidInput),
    (b"1" * 5000, JSON, InvalidInput),
    (b"a,b\n1,2,3\n", "text/csv", InvalidInput),
    (b"1,2,3\n", "text/csv", InvalidInput),
    (b"tenure,tenure\n1,2\n", "text/csv", InvalidInput),
    (b"\n\n", "text/csv", InvalidInput),
    (b'{"tenure": 1}\nnot json\n', "application/jsonlines", InvalidInput),
    (b"[1]\n", "application/jsonlines", InvalidInput),
])
def test_malformed_bodies_are_bad_input_not_crashes(model: ServingModel, options: ServingOptions, body: bytes,
                                                     content_type: str, error: type[ChurnError]) -> None:
    err = refusal(model, options, body, content_type)
    assert isinstance(err, error) and mapping_for(err).http_status == 400
    assert err.to_dict()["message"]


def test_a_bad_json_line_is_named_by_its_row(model: ServingModel, options: ServingOptions) -> None:
    body = (json.dumps(RECORD) + "\n" + json.dumps(RECORD) + "\n{oops\n").encode()
    assert refusal(model, options, body, "application/jsonlines").to_dict()["row"] == 2


def test_too_many_rows_is_413(model: ServingModel, params: Params) -> None:
    small = ServingOptions.from_params(params.with_overrides({"serving.max_rows": "3"}))
    for body, content_type in [(json.dumps([RECORD] * 4).encode(), JSON),
                               (csv_text([RECORD] * 4, header=True), "text/csv"),
                               ("\n".join([json.dumps(RECORD)] * 4).encode(), "application/jsonlines")]:
        err = refusal(model, small, body, content_type)
        assert isinstance(err, TooManyRows) and mapping_for(err).http_status == 413
    call(model, small, [RECORD] * 3)


def test_body_over_the_limit_is_413(model: ServingModel, options: ServingOptions) -> None:
    err = refusal(model, options, b" " * (options.max_body_bytes + 1))
    assert isinstance(err, PayloadTooLarge) and mapping_for(err).http_status == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png",
                                          "application/json; charset=klingon"])
def test_unknown_content_type_is_415(model: ServingModel, options: ServingOptions, content_type: str) -> None:
    err = refusal(model, options, RECORD, content_type)
    assert isinstance(err, UnsupportedMediaType) and mapping_for(err).http_status == 415


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/json;q=0", "image/*"])
def test_unacceptable_accept_is_406(model: ServingModel, options: ServingOptions, accept: str) -> None:
    err = refusal(model, options, RECORD, accept=accept)
    assert isinstance(err, NotAcceptable) and mapping_for(err).http_status == 406


def test_missing_content_type_is_read_as_json(model: ServingModel, options: ServingOptions) -> None:
    answer, _ = call(model, options, RECORD, content_type=None)
    assert answer["prediction"] in ("Churn", "No Churn")


def test_a_model_whose_fast_path_disagrees_with_its_pipeline_is_refused(loaded_model: LoadedModel) -> None:
    import dataclasses

    from churn.errors import InvalidModel

    skewed = dataclasses.replace(loaded_model.compiled, fill=loaded_model.compiled.fill + 1000.0)
    broken = dataclasses.replace(loaded_model, compiled=skewed)
    with pytest.raises(InvalidModel):
        ServingModel.prepare(broken)


def test_an_integer_too_big_for_a_double_is_bad_input_not_a_crash(model: ServingModel, options: ServingOptions) -> None:
    # Beyond 2**53 a double cannot hold the integer: the bounds reject it, naming the field.
    err = refusal(model, options, {**RECORD, "total_charges": 2**53 + 1})
    assert mapping_for(err).http_status == 400
    assert "total_charges" in str(err.to_dict())


# -- answer bodies: written as text, the same bytes as encoding the objects -------------------------


def reference_body(scores: answers.Scores, fmt: str, single: bool) -> bytes:
    """The answer as json.dumps and csv.writer write the answer objects (the obvious, slower way)."""
    items = answers.records(scores)
    if fmt == "json":
        return json.dumps(items[0] if single else {"predictions": items}, separators=(",", ":")).encode()
    if fmt == "jsonlines":
        return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with_ids = bool(scores.given_ids.any())
    writer.writerow((["customer_id"] if with_ids else []) + ["prediction", "probability", "risk_band"])
    for item in items:
        writer.writerow(([item.get("customer_id", "")] if with_ids else [])
                        + [item["prediction"], repr(item["probability"]), item["risk_band"]])
    return out.getvalue().encode()


@st.composite
def scores(draw: st.DrawFn) -> answers.Scores:
    n = draw(st.integers(1, 6))
    probability = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    names = draw(st.sampled_from([["high", "medium", "low"], ["very, high", 'say "hi"', "ok"], ["é", "\u2028", "x"]]))
    return answers.Scores(
        probability=probability,
        churn=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        band=np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))),
        band_names=names,
        ids=draw(st.lists(st.text(max_size=8) | st.sampled_from(["C-1", 'a"b', "x,y", "l\nm", "ü"]),
                          min_size=n, max_size=n)),
        given_ids=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
    )


@given(scores=scores(), fmt=st.sampled_from(["json", "csv", "jsonlines"]), single=st.booleans())
@settings(max_examples=300, deadline=None)
def test_answers_are_the_bytes_json_dumps_and_csv_writer_give(scores: answers.Scores, fmt: Any, single: bool) -> None:
    single = single and fmt == "json" and scores.probability.size == 1
    assert answers.render(scores, fmt, single) == reference_body(scores, fmt, single)


def test_a_batch_and_its_records_one_by_one_get_the_same_answers(model: ServingModel, options: ServingOptions) -> None:
    """The batch fast path and the single-record fast path agree (and with the Pipeline)."""
    records = [{**RECORD, "tenure": t, "contract": c, "total_charges": None if t % 2 else 100.0 * t}
               for t in range(0, 70, 7) for c in ("Month-to-month", "One year", "Two year")]
    batch, _ = call(model, options, records)
    one_by_one = [call(model, options, record)[0] for record in records]
    assert batch["predictions"] == one_by_one
    got = [item["probability"] for item in one_by_one]
    np.testing.assert_allclose(got, reference(model, records), atol=1e-9, rtol=0)


JSON_DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 and 1.0 and True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and repr(a) == repr(b))


@given(document=JSON_DOCUMENTS, ascii_only=st.booleans())
@settings(max_examples=500, deadline=None)
def test_json_bodies_read_exactly_as_the_json_module_reads_them(document: Any, ascii_only: bool) -> None:
    from churn.payloads import load_json

    body = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert same(load_json(body), json.loads(body))


@pytest.mark.parametrize("body", [b"[1e400]", b"[Infinity]", b'"\\ud800"', b"[18446744073709551616]",
                                  b"[-9223372036854775809]", b"\xef\xbb\xbf{}", b'{"a":1,"a":2}'])
def test_bodies_the_quick_reader_refuses_or_misreads_get_the_json_modules_answer(body: bytes) -> None:
    from churn.errors import InvalidInput
    from churn.payloads import load_json

    try:
        expected: Any = json.loads(body)
    except ValueError:
        with pytest.raises(InvalidInput):
            load_json(body)
        return
    assert same(load_json(body), expected)


# -- category values the model never learned ----------------------------------------------------------


@pytest.mark.parametrize("value", ["Weekly", "weekly\u00a0"])  # the fast path, then the validator's path
def test_a_record_with_an_unseen_category_is_scored_as_missing_and_says_so(model: ServingModel,
                                                                          options: ServingOptions,
                                                                          value: str) -> None:
    answer, _ = call(model, options, {**RECORD, "contract": value})

    assert answer["unseen_categories"] == ["contract"]
    # The sklearn Pipeline given the value as missing (pandas' NaN category) agrees.
    assert answer["probability"] == pytest.approx(reference(model, [{**RECORD, "contract": "Weekly"}])[0], abs=1e-9)
    clean = validate([{**RECORD, "customer_id": "0", "contract": "Weekly"}], model.schema).clean
    assert clean.column("contract").to_pylist() == [None]


@pytest.mark.parametrize("fold", ["", " "])  # " Weekly" only the validator reads: the whole batch goes there
def test_a_batch_names_the_unseen_categories_of_each_record_and_only_of_those(model: ServingModel,
                                                                              options: ServingOptions,
                                                                              fold: str) -> None:
    records = [RECORD, {**RECORD, "contract": fold + "Weekly", "payment_method": "Cash"}, {**RECORD, "tenure": 3}]
    answer, _ = call(model, options, records)

    assert [item.get("unseen_categories") for item in answer["predictions"]] == [
        None, ["contract", "payment_method"], None]
    assert "unseen_categories" not in call(model, options, [RECORD, RECORD])[0]["predictions"][0]


def test_csv_answers_carry_an_unseen_categories_column_when_any_record_has_one(model: ServingModel,
                                                                              options: ServingOptions) -> None:
    records = [RECORD, {**RECORD, "contract": "Weekly"}]
    text, _ = call(model, options, records, accept="text/csv")

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-1] == "unseen_categories" and [row[-1] for row in rows[1:]] == ["", "contract"]


def test_an_unseen_category_is_refused_under_unknown_reject(rejecting: ServingModel,
                                                            options: ServingOptions) -> None:
    body = refusal(rejecting, options, {**RECORD, "contract": "Weekly"}).to_dict()
    assert (body["row"], body["field"], body["reason"]) == (0, "contract", "unknown_category")


def test_the_reload_probe_scores_unseen_values_on_every_path_only_where_they_are_scored_as_missing(
    loaded_model: LoadedModel
) -> None:
    categorical = [s.name for s in loaded_model.compiled.schema.categorical]
    probes = probe_records(loaded_model)
    unseen = [p for p in probes if all(p[name] == unseen_value(()) for name in categorical)]
    assert len(unseen) == 1
    assert not any(p[name] == unseen_value(()) for p in probe_records(rejecting_model(loaded_model))
                   for name in categorical)
    assert unseen_value(("churn-probe-unseen", "X")) not in ("churn-probe-unseen", "X")
