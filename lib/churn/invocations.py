"""POST /invocations as one pure function: request bytes in, response bytes out, no web framework.

A bare JSON object takes the fast path (record -> feature row -> booster) when the record is
plainly clean; everything else goes through the one validator. A batch with any invalid
record is rejected whole (400, every bad row listed): callers never get partial answers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from churn import answers, media, payloads
from churn.errors import ConfigError, InvalidInput, InvalidRecord, PayloadTooLarge
from churn.params import Params
from churn.scoring import ScoringConfig
from churn.serving_model import ServingModel
from churn.validation import ValidationResult, describe, validate

MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint payload limit
MAX_LISTED_ERRORS = 50
_MAX_VALUE_CHARS = 100
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class ServingOptions:
    """Request limits (`serving:` in params.yaml) and the batch job's scoring rules (`scoring:`)."""

    scoring: ScoringConfig
    max_rows: int = 10_000
    max_body_bytes: int = MAX_BODY_BYTES

    @classmethod
    def from_params(cls, params: Params) -> ServingOptions:
        max_rows = int(params.section("serving").get("max_rows", 10_000))
        if max_rows < 1:
            raise ConfigError(f"serving.max_rows={max_rows} must be >= 1")
        return cls(scoring=ScoringConfig.from_params(params), max_rows=max_rows)


@dataclass(frozen=True)
class Answer:
    """The response body and type, plus what the caller records in its metrics."""

    body: bytes
    content_type: str
    probability: np.ndarray
    churn: np.ndarray
    score_seconds: float  # validation, encoding and the model: not parsing or rendering


def invocations(
    body: bytes,
    content_type: str | None,
    accept: str | None,
    model: ServingModel,
    options: ServingOptions,
    reasons: int = 0,
) -> Answer:
    """Score the records in `body`; ChurnError subclasses say what was wrong with the request."""
    out_format = media.response_format(accept)
    body_type = media.request_body_type(content_type)
    if len(body) > options.max_body_bytes:
        raise PayloadTooLarge(f"body of {len(body)} bytes is over the {options.max_body_bytes} byte limit",
                              limit=options.max_body_bytes)
    parsed = payloads.parse(body, body_type, model.schema, options.max_rows)
    started = time.perf_counter()
    scores = score(parsed, model, options, reasons)
    elapsed = time.perf_counter() - started
    rendered = answers.render(scores, out_format, parsed.single)
    return Answer(rendered, media.content_type_for(out_format), scores.probability, scores.churn, elapsed)


def reasons_wanted(value: str | None, options: ServingOptions, n_features: int) -> int:
    """How many top reasons a request asks for: true/yes gives the default, a number that many."""
    if value is None or not value.strip():
        return 0
    text = value.strip().lower()
    if text in _TRUE:
        wanted = options.scoring.top_reasons
    elif text in _FALSE:
        return 0
    elif text.isascii() and text.isdigit() and len(text) < 6:
        wanted = int(text)
    else:
        raise InvalidInput(f"reasons={value[:40]!r} must be true, false or a count of reasons", field="reasons")
    return min(wanted, n_features)


def score(parsed: payloads.Parsed, model: ServingModel, options: ServingOptions, reasons: int = 0) -> answers.Scores:
    """Probabilities, predictions, bands and (if asked) reasons for parsed records."""
    x, ids, probability, unseen = _fast(parsed, model)
    if x is None:
        result = _validated(parsed, model)
        clean = result.clean
        x, ids = model.loaded.compiled.matrix(clean), clean.column(model.schema.id_field).to_pylist()
        probability = model.loaded.compiled.probability(x)
        unseen = result.unseen_in_clean()
    return answers.Scores(
        probability=probability,
        churn=probability >= model.loaded.compiled.threshold,
        band=options.scoring.band_index(probability),
        band_names=options.scoring.band_names,
        ids=ids,
        given_ids=parsed.given_ids,
        reasons=_reasons(model, x, reasons) if reasons > 0 else None,
        reasons_wanted=reasons,
        unseen=_unseen_lists(unseen, model.loaded.compiled.feature_order, len(ids)),
    )


Unseen = dict[str, np.ndarray]  # feature -> mask of the records whose value was scored as missing


def _fast(parsed: payloads.Parsed, model: ServingModel) -> tuple[Any, list[str], Any, Unseen]:
    """Matrix, ids, probabilities and unseen values from the fast path; x None when the validator must judge."""
    if parsed.single and parsed.records:
        encoded = model.encoder.encode(parsed.records[0])
        if encoded is not None:
            unseen = {name: np.ones(1, dtype=bool) for name in encoded.unseen}
            return encoded.row, [encoded.customer_id or ""], model.scorer.probability(encoded.row), unseen
        return None, [], None, {}
    names = [model.schema.id_field, *model.schema.feature_names]
    batch = model.encoder.encode_batch(parsed.field_columns(names), parsed.n_rows, text=parsed.table is not None)
    if batch is None:
        return None, [], None, {}
    return batch.x, batch.ids, model.loaded.compiled.probability(batch.x), batch.unseen


def _unseen_lists(unseen: Unseen, order: list[str], n: int) -> list[list[str]] | None:
    """Each record's features whose value the model never learned (in feature order); None if no record has one."""
    if not unseen:
        return None
    out: list[list[str]] = [[] for _ in range(n)]
    for name in (name for name in order if name in unseen):
        for i in np.flatnonzero(unseen[name]).tolist():
            out[i].append(name)
    return out


def _validated(parsed: payloads.Parsed, model: ServingModel) -> ValidationResult:
    data: Any = parsed.records if parsed.records is not None else parsed.table
    try:
        result = validate(data, model.schema)
    except InvalidInput:
        raise
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as err:
        # The validator should classify every value; if one slips through, it is still bad input.
        raise InvalidInput(f"the records could not be read: {str(err)[:200]}") from err
    if result.rejected.num_rows:
        raise _invalid(result.rejected, parsed)
    return result


def _invalid(rejected: pa.Table, parsed: payloads.Parsed) -> InvalidRecord:
    """One error naming the first bad row and field, listing the first bad rows in full."""
    errors: list[dict[str, Any]] = []
    first = rejected.slice(0, 1).to_pylist()[0]
    for row in rejected.slice(0, MAX_LISTED_ERRORS).to_pylist():
        given = bool(parsed.given_ids[row["row"]])
        for problem in json.loads(row["errors"]):
            item = {"row": row["row"], "field": problem["field"], "reason": problem["reason"],
                    "value": _short(problem.get("value"))}
            if given:
                item["customer_id"] = row["customer_id"]
            errors.append(item)
    n = parsed.n_rows
    what = "the record is invalid" if n == 1 else f"{rejected.num_rows} of {n} records are invalid"
    return InvalidRecord(
        f"{what}: {describe(rejected)}",
        row=first["row"], field=first["field"], reason=first["reason"],
        rejected=rejected.num_rows, errors=errors,
    )


def _short(value: Any) -> Any:
    """Echo bad values back, but never a megabyte of them."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= _MAX_VALUE_CHARS:
        return value
    return text[:_MAX_VALUE_CHARS] + "..."


def _reasons(model: ServingModel, x: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
    compiled = model.loaded.compiled
    order, contribution = compiled.top_reasons(x, k)
    names = compiled.feature_order
    specs = [model.schema.by_name[name] for name in names]
    out = []
    for i in range(x.shape[0]):
        items = []
        for j, c in zip(order[i].tolist(), contribution[i].tolist()):
            raw = float(x[i, j])
            spec = specs[j]
            value: Any = raw if spec.type == "float" else None if np.isnan(raw) else \
                int(raw) if spec.type == "int" else spec.values[int(raw)]
            items.append({"feature": names[j], "value": value, "contribution": c})
        out.append(items)
    return out
