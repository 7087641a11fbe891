"""Behaviour of the synthetic customer generator (churn.generator)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from churn.generator import (
    CATEGORIES,
    CONTRACTS,
    DIRTY_KINDS,
    FEATURES,
    INTERNET_SERVICES,
    GeneratorConfig,
    generate,
    output_schema,
    to_documents,
    true_churn_probability,
    write_csv,
    write_parquet,
)


def _table(config: GeneratorConfig) -> pa.Table:
    return pa.concat_tables(generate(config))


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """200k clean, fully labelled customers (the statistical tests share them)."""
    return _table(GeneratorConfig(200_000, seed=11)).to_pandas()


@pytest.fixture(scope="module")
def dirty_pair() -> tuple[pa.Table, pa.Table]:
    """The same 60k customers clean and with 20% dirty rows."""
    clean = _table(GeneratorConfig(60_000, seed=5, labelled_share=0.7))
    dirty = _table(GeneratorConfig(60_000, seed=5, labelled_share=0.7, dirty_rate=0.2))
    return clean, dirty


# --- determinism and streaming -------------------------------------------------


def test_same_config_gives_identical_output() -> None:
    config = GeneratorConfig(5_000, seed=3, dirty_rate=0.1, labelled_share=0.5)
    assert _table(config).equals(_table(config))


def test_different_seeds_give_different_customers() -> None:
    a = _table(GeneratorConfig(2_000, seed=1))
    b = _table(GeneratorConfig(2_000, seed=2))
    assert not a.column("tenure").equals(b.column("tenure"))


@pytest.mark.parametrize("dirty_rate", [0.0, 0.15])
def test_output_does_not_depend_on_chunk_rows(dirty_rate: float) -> None:
    common = {
        "n_customers": 70_001,
        "seed": 9,
        "dirty_rate": dirty_rate,
        "labelled_share": 0.8,
    }
    a = _table(GeneratorConfig(chunk_rows=1_000, **common))  # type: ignore[arg-type]
    b = _table(GeneratorConfig(chunk_rows=7_777, **common))  # type: ignore[arg-type]
    assert a.num_rows == b.num_rows == 70_001
    assert a.equals(b)


def test_chunks_hold_at_most_chunk_rows_and_add_up() -> None:
    sizes = [t.num_rows for t in generate(GeneratorConfig(50_000, chunk_rows=7_777))]
    assert max(sizes) <= 7_777
    assert sum(sizes) == 50_000
    assert sizes[:-1] == [7_777] * (len(sizes) - 1)


def test_first_customers_do_not_depend_on_n_customers() -> None:
    small = _table(GeneratorConfig(1_234, seed=4))
    large = _table(GeneratorConfig(40_000, seed=4))
    assert large.slice(0, 1_234).equals(small)


def test_generation_streams_without_materialising_everything() -> None:
    # A billion customers would not fit in memory: the first chunk must still come quickly.
    start = time.perf_counter()
    first = next(generate(GeneratorConfig(10**9, chunk_rows=1_000)))
    assert first.num_rows == 1_000
    assert time.perf_counter() - start < 10
    assert first.column("customer_id")[0].as_py() == "C0000000001"


# --- schema and clean values ---------------------------------------------------


def test_clean_table_has_documented_columns_and_types() -> None:
    table = _table(GeneratorConfig(1_000))
    assert table.schema.equals(output_schema(GeneratorConfig(1_000)))
    types = {f.name: f.type for f in table.schema}
    assert types["customer_id"] == pa.string()
    assert types["status"] == pa.string()
    assert types["tenure"] == pa.int64()
    assert types["monthly_charges"] == pa.float64()
    assert types["total_charges"] == pa.float64()
    assert types["support_calls"] == pa.int64()
    for name in CATEGORIES:
        assert types[name] == pa.string()
    assert types["churned"] == pa.bool_()
    assert types["updated_at"] == pa.timestamp("us", tz="UTC")
    assert types["true_probability"] == pa.float64()
    assert types["dirty_kind"] == pa.string()
    assert table.column("dirty_kind").null_count == table.num_rows


def test_dirty_table_stores_messy_numeric_columns_as_strings(tmp_path: Path) -> None:
    config = GeneratorConfig(3_000, dirty_rate=0.1)
    table = _table(config)
    for name in ("tenure", "monthly_charges", "total_charges"):
        assert table.schema.field(name).type == pa.string()
    assert table.schema.field("support_calls").type == pa.int64()
    assert write_parquet(config, tmp_path / "d.parquet") == 3_000
    assert pq.read_table(tmp_path / "d.parquet").equals(table)


def test_customer_ids_are_unique_and_zero_padded() -> None:
    ids = (
        _table(GeneratorConfig(20_000, id_prefix="X")).column("customer_id").to_pylist()
    )
    assert len(set(ids)) == len(ids)
    assert ids[0] == "X00000001" and ids[-1] == "X00020000"
    assert all(re.fullmatch(r"X\d{8}", i) for i in ids)


def test_clean_categories_come_only_from_the_allowed_sets(big: pd.DataFrame) -> None:
    for name, allowed in CATEGORIES.items():
        assert set(big[name].unique()) == set(allowed), name
    assert set(big["status"].unique()) == {"active", "churned"}


def test_clean_numbers_respect_the_feature_rules(big: pd.DataFrame) -> None:
    assert (big["tenure"] >= 0).all()
    assert (big["monthly_charges"] >= 0).all()
    assert (big["support_calls"] >= 0).all()
    assert (big["total_charges"].dropna() >= 0).all()
    # Only brand-new customers lack total charges, and some of them do.
    missing = big["total_charges"].isna()
    assert missing.any()
    assert (big.loc[missing, "tenure"] == 0).all()
    assert np.isfinite(big["total_charges"].dropna()).all()


def test_features_are_correlated_like_telecom_data(big: pd.DataFrame) -> None:
    no_net = big["internet_service"] == "No"
    assert (
        (big.loc[no_net, ["tech_support", "online_security"]] == "No internet service")
        .all()
        .all()
    )
    assert (
        not (
            big.loc[~no_net, ["tech_support", "online_security"]]
            == "No internet service"
        )
        .any()
        .any()
    )
    charges = big.groupby("internet_service")["monthly_charges"].mean()
    assert charges["Fiber optic"] > charges["DSL"] > charges["No"]
    tenure = big.groupby("contract")["tenure"].mean()
    assert tenure["Two year"] > tenure["One year"] > tenure["Month-to-month"]
    billed = big.dropna(subset=["total_charges"])
    expected = billed["tenure"] * billed["monthly_charges"]
    assert np.corrcoef(billed["total_charges"], expected)[0, 1] > 0.98
    calls = big.groupby("internet_service")["support_calls"].mean()
    assert calls["Fiber optic"] > calls["DSL"] > calls["No"]


def test_updated_at_is_utc_and_in_a_fixed_window(big: pd.DataFrame) -> None:
    stamps = big["updated_at"]
    assert str(stamps.dt.tz) == "UTC"
    assert stamps.min() >= pd.Timestamp("2024-10-01", tz="UTC")
    assert stamps.max() <= pd.Timestamp("2025-01-01", tz="UTC")


# --- the generative process ----------------------------------------------------


def test_churn_rate_is_realistic(big: pd.DataFrame) -> None:
    assert 0.15 <= big["churned"].mean() <= 0.30


def test_oracle_is_good_but_far_from_perfect(big: pd.DataFrame) -> None:
    y = big["churned"].astype(int).to_numpy()
    p = big["true_probability"].to_numpy()
    assert 0.75 <= roc_auc_score(y, p) <= 0.95
    assert brier_score_loss(y, p) < brier_score_loss(y, np.full_like(p, y.mean()))
    # Calibrated by construction: mean probability matches the churn rate.
    assert abs(p.mean() - y.mean()) < 0.01
    assert ((p > 0) & (p < 1)).all()


def test_true_probability_column_is_the_public_process(big: pd.DataFrame) -> None:
    head = big.head(5_000)
    features = {name: head[name].to_numpy() for name in FEATURES}
    np.testing.assert_allclose(
        true_churn_probability(features), head["true_probability"], rtol=1e-12
    )


def test_true_probability_rejects_unknown_categories(big: pd.DataFrame) -> None:
    features: dict[str, Any] = {name: big[name].head(3).to_numpy() for name in FEATURES}
    features["contract"] = np.array(["Month to month"] * 3, dtype=object)
    with pytest.raises(ValueError, match="contract"):
        true_churn_probability(features)


def _rate(df: pd.DataFrame, mask: pd.Series) -> float:
    return float(df.loc[mask, "churned"].mean())


@pytest.mark.parametrize(
    ("effect", "riskier", "safer"),
    [
        (
            "month-to-month vs two year",
            lambda d: d.contract == "Month-to-month",
            lambda d: d.contract == "Two year",
        ),
        ("short vs long tenure", lambda d: d.tenure < 12, lambda d: d.tenure >= 48),
        (
            "4+ support calls vs fewer",
            lambda d: d.support_calls >= 4,
            lambda d: d.support_calls < 4,
        ),
        (
            "fiber vs DSL",
            lambda d: d.internet_service == "Fiber optic",
            lambda d: d.internet_service == "DSL",
        ),
        (
            "electronic check vs card",
            lambda d: d.payment_method == "Electronic check",
            lambda d: d.payment_method == "Credit card (automatic)",
        ),
        (
            "no tech support vs support",
            lambda d: d.tech_support == "No",
            lambda d: d.tech_support == "Yes",
        ),
    ],
)
def test_documented_effects_hold(
    big: pd.DataFrame,
    effect: str,
    riskier: Callable[[pd.DataFrame], pd.Series],
    safer: Callable[[pd.DataFrame], pd.Series],
) -> None:
    assert _rate(big, riskier(big)) > _rate(big, safer(big)) + 0.03, effect


def test_support_call_risk_jumps_at_four_calls(big: pd.DataFrame) -> None:
    by_calls = big.groupby("support_calls")["churned"].mean()
    # The step from 3 to 4 calls is larger than the steady slope below it.
    assert by_calls[4] - by_calls[3] > 2 * (by_calls[3] - by_calls[2])


def test_tenure_protects_month_to_month_customers_more(big: pd.DataFrame) -> None:
    def drop(contract: str) -> float:
        d = big[big.contract == contract]
        return _rate(d, d.tenure.between(1, 6)) - _rate(d, d.tenure >= 48)

    assert drop("Month-to-month") > drop("Two year") + 0.1


@pytest.mark.slow
def test_lightgbm_learns_close_to_but_not_beyond_the_oracle() -> None:
    import lightgbm as lgb

    df = _table(GeneratorConfig(40_000, seed=7)).to_pandas()
    x = df[list(FEATURES)].copy()
    for name, allowed in CATEGORIES.items():
        x[name] = pd.Categorical(x[name], categories=list(allowed))
    y = df["churned"].astype(int).to_numpy()
    train, test = slice(0, 20_000), slice(20_000, None)
    model = lgb.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=50,
        n_jobs=2,
        random_state=0,
        verbose=-1,
    ).fit(x[train], y[train])
    model_auc = roc_auc_score(y[test], np.asarray(model.predict_proba(x[test]))[:, 1])
    oracle_auc = roc_auc_score(y[test], df["true_probability"].to_numpy()[test])
    assert oracle_auc - 0.05 <= model_auc <= oracle_auc + 0.01


# --- labels --------------------------------------------------------------------


def test_labelled_share_is_respected() -> None:
    table = _table(GeneratorConfig(100_000, seed=2, labelled_share=0.6))
    churned = table.column("churned")
    assert abs((1 - churned.null_count / table.num_rows) - 0.6) < 0.01
    status = table.column("status").to_pylist()
    known = churned.to_pylist()
    # Only customers known to have churned are "churned"; the rest are current customers.
    assert all((s == "churned") == (k is True) for s, k in zip(status, known))


def test_unlabelled_customers_keep_features_and_probability() -> None:
    full = _table(GeneratorConfig(10_000, seed=2))
    part = _table(GeneratorConfig(10_000, seed=2, labelled_share=0.3))
    for name in (*FEATURES, "true_probability", "customer_id"):
        assert full.column(name).equals(part.column(name)), name


# --- dirty rows ----------------------------------------------------------------


def test_dirty_rate_is_respected(dirty_pair: tuple[pa.Table, pa.Table]) -> None:
    _, dirty = dirty_pair
    share = 1 - dirty.column("dirty_kind").null_count / dirty.num_rows
    assert abs(share - 0.2) < 0.01
    names = set(dirty.column("dirty_kind").drop_null().to_pylist())
    assert names == {k.name for k in DIRTY_KINDS}
    assert all(re.fullmatch(r"(reject|coerce):[a-z_]+", n) for n in names)


def _as_text(column: pa.ChunkedArray) -> list[Any]:
    return (
        column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    ).to_pylist()


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# Per kind: does the messy table value match the promise, given the clean value?
TABLE_PROMISES: dict[str, Callable[[Any, Any], bool]] = {
    "reject:negative_tenure": lambda v, c: (
        re.fullmatch(r"-\d+", v) is not None and int(v) < 0
    ),
    "reject:non_numeric_text": lambda v, c: (
        v.strip() != "" and _float_or_none(v) is None
    ),
    "reject:unknown_contract": lambda v, c: (
        v not in CONTRACTS and v.strip().lower() not in {x.lower() for x in CONTRACTS}
    ),
    "reject:unknown_internet_service": lambda v, c: v not in INTERNET_SERVICES,
    "reject:missing_field": lambda v, c: v is None,
    "reject:negative_charges": lambda v, c: (
        float(v) < 0 and math.isclose(-float(v), float(c))
    ),
    "reject:non_finite": lambda v, c: math.isinf(float(v)),
    "coerce:padded_number": lambda v, c: (
        v != v.strip() and math.isclose(float(v.strip()), float(c))
    ),
    "coerce:integer_as_float": lambda v, c: (
        re.fullmatch(r"\d+\.0", v) is not None and int(float(v)) == int(c)
    ),
    "coerce:blank_as_missing": lambda v, c: v is not None and v.strip() == "",
    "coerce:category_case": lambda v, c: v != c and v.strip().lower() == c.lower(),
    "coerce:boolean_yes_no": lambda v, c: v == {"Yes": "True", "No": "False"}[c],
}


@pytest.mark.parametrize("kind", DIRTY_KINDS, ids=lambda k: k.name)
def test_each_dirty_kind_puts_its_promised_value_in_its_column(
    dirty_pair: tuple[pa.Table, pa.Table], kind: Any
) -> None:
    clean, dirty = dirty_pair
    mask = pc.fill_null(pc.equal(dirty.column("dirty_kind"), kind.name), False)
    messy = _as_text(dirty.filter(mask).column(kind.column))
    original = _as_text(clean.filter(mask).column(kind.column))
    assert len(messy) > 100
    bad = [
        (v, c) for v, c in zip(messy, original) if not TABLE_PROMISES[kind.name](v, c)
    ]
    assert not bad, bad[:5]


def test_a_dirty_row_differs_from_its_clean_self_in_one_column_only(
    dirty_pair: tuple[pa.Table, pa.Table],
) -> None:
    clean, dirty = dirty_pair
    kinds = dirty.column("dirty_kind").to_pylist()
    column_of = {k.name: k.column for k in DIRTY_KINDS}
    for name in clean.column_names:
        if name == "dirty_kind":
            continue
        same = np.array(
            [
                a == b
                for a, b in zip(
                    _as_text(clean.column(name)), _as_text(dirty.column(name))
                )
            ]
        )
        touched = np.array([k is not None and column_of[k] == name for k in kinds])
        assert same[~touched].all(), name
        # Every mutation changes its value (blank " " replaces a number or a null alike).
        assert not same[touched].any(), name


# --- documents -----------------------------------------------------------------


def test_clean_documents_hold_native_values() -> None:
    table = _table(GeneratorConfig(3_000, seed=8, labelled_share=0.5))
    docs = to_documents(table)
    assert len(docs) == 3_000
    for doc, row in zip(docs, table.to_pylist()):
        assert type(doc["tenure"]) is int and type(doc["support_calls"]) is int
        assert type(doc["monthly_charges"]) is float
        assert doc["total_charges"] is None or type(doc["total_charges"]) is float
        assert all(doc[c] in CATEGORIES[c] for c in CATEGORIES)
        assert doc["updated_at"].utcoffset().total_seconds() == 0
        assert "true_probability" not in doc and "dirty_kind" not in doc
        if row["churned"] is None:
            assert "churned" not in doc
        else:
            assert doc["churned"] is row["churned"]


def test_dirty_documents_round_trip_clean_values_natively_and_keep_messy_ones(
    dirty_pair: tuple[pa.Table, pa.Table],
) -> None:
    clean, dirty = dirty_pair
    n = 10_000
    clean_docs = to_documents(clean.slice(0, n))
    docs = to_documents(dirty.slice(0, n), include_truth=True)
    column_of = {k.name: k.column for k in DIRTY_KINDS}
    seen: set[str] = set()
    for doc, ref in zip(docs, clean_docs):
        kind = doc.pop("dirty_kind")
        doc.pop("true_probability")
        assert ("churned" in doc) == ("churned" in ref)
        if kind is None:
            assert doc == ref  # clean values come back as the same native numbers
            continue
        seen.add(kind)
        field = column_of[kind]
        assert {k: v for k, v in doc.items() if k != field} == {
            k: v for k, v in ref.items() if k != field
        }
        value, before = doc.get(field, "<absent>"), ref[field]
        if kind == "reject:missing_field":
            assert value == "<absent>"
        elif kind == "reject:negative_tenure":
            assert type(value) is int and value < 0
        elif kind == "reject:negative_charges":
            assert type(value) is float and value == -before
        elif kind == "reject:non_finite":
            assert type(value) is float and math.isinf(value)
        elif kind == "coerce:boolean_yes_no":
            assert type(value) is bool and value == (before == "Yes")
        else:
            # Strings where numbers belong, blanks, unknown or mis-cased categories.
            assert type(value) is str and value != before
    assert seen == set(column_of)


# --- files ---------------------------------------------------------------------


def test_write_parquet_streams_one_row_group_per_chunk(tmp_path: Path) -> None:
    config = GeneratorConfig(25_000, seed=1, chunk_rows=10_000, labelled_share=0.9)
    path = tmp_path / "customers.parquet"
    assert write_parquet(config, path) == 25_000
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        10_000,
        10_000,
        5_000,
    ]
    assert pq.read_table(path).equals(_table(config))


def test_write_csv_writes_header_and_every_row(tmp_path: Path) -> None:
    config = GeneratorConfig(5_000, seed=1, chunk_rows=2_000, dirty_rate=0.1)
    path = tmp_path / "customers.csv"
    assert write_csv(config, path) == 5_000
    back = pacsv.read_csv(path)
    assert back.num_rows == 5_000
    assert back.column_names == output_schema(config).names


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_customers": -1},
        {"n_customers": 10, "chunk_rows": 0},
        {"n_customers": 10, "dirty_rate": 1.5},
        {"n_customers": 10, "labelled_share": -0.1},
        {"n_customers": 10, "seed": -3},
    ],
)
def test_bad_config_fails_naming_the_value(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(k for k in reversed(list(kwargs)))):
        GeneratorConfig(**kwargs)


def test_zero_customers_yield_nothing(tmp_path: Path) -> None:
    assert list(generate(GeneratorConfig(0))) == []
    assert write_parquet(GeneratorConfig(0), tmp_path / "empty.parquet") == 0
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0
