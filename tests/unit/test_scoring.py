"""The scoring core: risk rows equal the Pipeline's decisions; bands, revenue, reasons, rank, tallies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from unknown_policy import UNSEEN_KINDS, rejected_kind

from churn import generator, scoring
from churn.adapters.model_format import LoadedModel
from churn.batch import ModelRef, ShardRun
from churn.errors import TooManyRejects
from churn.model import to_frame
from churn.params import Params
from churn.risk_table import RISK_SCHEMA
from churn.training import Splits
from churn.validation import validate

RUN = scoring.RunInfo(dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 2, 0, tzinfo=dt.UTC), "churn", "7", "run-abc")


@pytest.fixture(scope="module")
def config(params: Params) -> scoring.ScoringConfig:
    return scoring.ScoringConfig.from_params(params)


@pytest.fixture(scope="module")
def scored(loaded_model: LoadedModel, splits: Splits, config: scoring.ScoringConfig) -> scoring.Scored:
    return scoring.score(splits.test, loaded_model.compiled, config, RUN)


def test_probabilities_and_decisions_equal_the_sklearn_pipeline(
    loaded_model: LoadedModel, splits: Splits, scored: scoring.Scored
) -> None:
    expected = loaded_model.trained.predict_proba(to_frame(splits.test, loaded_model.compiled.schema))
    table = scored.table

    np.testing.assert_allclose(table.column("churn_probability").to_numpy(), expected, rtol=0, atol=1e-9)
    decided = table.column("churn_prediction").to_numpy(zero_copy_only=False)
    assert (decided == (expected >= loaded_model.trained.threshold)).all()
    assert table.schema == RISK_SCHEMA
    assert table.column("customer_id").to_pylist() == splits.test.column("customer_id").to_pylist()


def test_risk_bands_follow_the_lower_bounds_in_params(config: scoring.ScoringConfig) -> None:
    probability = np.array([0.0, 0.19999, 0.2, 0.49, 0.5, 1.0])

    bands = [config.band_names[i] for i in config.band_index(probability)]

    assert bands == ["low", "low", "medium", "medium", "high", "high"]


def test_revenue_at_risk_is_probability_times_monthly_charges(splits: Splits, scored: scoring.Scored) -> None:
    expected = scored.probability * splits.test.column("monthly_charges").to_numpy()

    np.testing.assert_allclose(scored.table.column("revenue_at_risk").to_numpy(), expected)


def test_reasons_only_for_customers_at_or_above_the_reason_threshold(
    scored: scoring.Scored, config: scoring.ScoringConfig
) -> None:
    reasons = scored.table.column("reasons").to_pylist()
    flagged = scored.probability >= config.reason_threshold

    assert flagged.any() and (~flagged).any()
    assert all((r is not None) == f for r, f in zip(reasons, flagged))
    assert all(len(r) == config.top_reasons for r in reasons if r is not None)
    assert scored.flagged == int(flagged.sum())


def test_reasons_off_leaves_every_reason_null(
    loaded_model: LoadedModel, splits: Splits, config: scoring.ScoringConfig
) -> None:
    table = scoring.score(splits.test, loaded_model.compiled, config, RUN, reasons=False).table

    assert table.column("reasons").null_count == table.num_rows


def test_rank_orders_by_probability_then_customer_id_and_is_dense() -> None:
    chunks = [(np.array([0.5, 0.9]), pa.array(["C3", "C1"])), (np.array([0.5, 0.1, 0.5]), pa.array(["C2", "C5", "C0"]))]

    ranks = scoring.ranks(lambda: iter(chunks), 5)

    # 0.9 C1 -> 1; the 0.5 tie breaks by id: C0, C2, C3; then 0.1 C5.
    assert ranks.tolist() == [4, 1, 3, 5, 2]


@pytest.mark.parametrize("bucket_rows", [1, 7, 100, 10_000])
@pytest.mark.parametrize("id_order", ["shuffled", "ascending"])
def test_external_rank_equals_one_in_memory_sort_for_any_bucket_size(bucket_rows: int, id_order: str) -> None:
    rng = np.random.default_rng(4)
    probability = np.round(rng.beta(0.5, 2.0, 3_000), 2)  # few distinct values: big tie groups
    probability[:5] = [0.0, 1.0, 1e-300, 0.5, 0.5]
    numbers = rng.permutation(3_000) if id_order == "shuffled" else np.arange(3_000)
    ids = pa.array([f"C{i:05d}" for i in numbers])
    chunks = [(probability[i : i + 400], ids.slice(i, 400)) for i in range(0, 3_000, 400)]

    ranks = scoring.ranks(lambda: iter(chunks), 3_000, bucket_rows=bucket_rows)

    table = pa.table({"churn_probability": probability, "customer_id": ids, "rank": ranks})
    assert scoring.rank_order(table).column("rank").to_pylist() == list(range(1, 3_001))


def test_tally_counts_bands_buckets_and_rejects(
    loaded_model: LoadedModel, splits: Splits, config: scoring.ScoringConfig, scored: scoring.Scored
) -> None:
    tally = scoring.Tally(config, loaded_model.compiled.schema)
    tally.add(scored, splits.test, rejected=10)

    assert tally.read == splits.test.num_rows + 10 and tally.rejected == 10
    assert sum(tally.bands.values()) == splits.test.num_rows
    assert tally.buckets.sum() == splits.test.num_rows
    assert tally.reject_share == pytest.approx(10 / (splits.test.num_rows + 10))


def _model(loaded_model: LoadedModel) -> ModelRef:
    return ModelRef(loaded_model.compiled, "churn", "7", "run-abc", loaded_model.reference_profile)


def test_shard_run_ranks_across_chunks_and_quarantines_rejects(
    loaded_model: LoadedModel, config: scoring.ScoringConfig, tmp_path: Path
) -> None:
    dirty = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=1_500, seed=5, dirty_rate=0.02)))
    chunks = [dirty.slice(i, 500) for i in range(0, dirty.num_rows, 500)]
    run = ShardRun(_model(loaded_model), config, dt.date(2024, 1, 31), tmp_path)

    run.score_all(chunks)
    rows = pa.concat_tables(run.ranked())

    kinds = dirty.column("dirty_kind").to_pylist()
    injected = dirty.filter(pa.array([rejected_kind(k) for k in kinds]))
    quarantined = pa.concat_tables([pa.Table.from_pylist(d) for d in run.quarantine_documents()])
    assert sorted(quarantined.column("customer_id").to_pylist(), key=str) == sorted(
        injected.column("customer_id").to_pylist(), key=str
    )
    # Unseen categories are scored with the value missing, and counted per feature (unknown: missing).
    unseen = sum(1 for k in kinds if k in UNSEEN_KINDS)
    assert unseen > 0 and sum(sum(v.values()) for v in run.tally.unseen.values()) == unseen
    assert sum(run.tally.unseen_share().values()) == pytest.approx(unseen / dirty.num_rows)
    assert rows.num_rows == dirty.num_rows - injected.num_rows == run.tally.scored
    assert sorted(rows.column("rank").to_pylist()) == list(range(1, rows.num_rows + 1))
    ordered = scoring.rank_order(rows)
    assert ordered.column("rank").to_pylist() == list(range(1, rows.num_rows + 1))
    assert run.tally.psi() is not None


def test_too_many_rejects_fail_the_run_before_anything_is_ranked(
    loaded_model: LoadedModel, config: scoring.ScoringConfig, tmp_path: Path
) -> None:
    dirty = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=400, seed=5, dirty_rate=0.5)))
    run = ShardRun(_model(loaded_model), config, dt.date(2024, 1, 31), tmp_path)

    with pytest.raises(TooManyRejects, match="over the limit"):
        run.score_all([dirty])


def test_validated_chunk_scores_the_same_in_any_chunking(
    loaded_model: LoadedModel, customers: pa.Table, config: scoring.ScoringConfig
) -> None:
    clean = validate(customers.slice(0, 600), loaded_model.compiled.schema).clean
    whole = scoring.score(clean, loaded_model.compiled, config, RUN).table
    parts = pa.concat_tables(
        scoring.score(clean.slice(i, 150), loaded_model.compiled, config, RUN).table for i in range(0, 600, 150)
    )

    assert parts.equals(whole)


def test_duplicate_ids_keep_the_first_read_and_quarantine_the_rest_across_chunks(
    loaded_model: LoadedModel, config: scoring.ScoringConfig, customers: pa.Table, tmp_path: Path
) -> None:
    base = customers.slice(0, 6).drop_columns(["churned"]).to_pylist()
    docs = [dict(d, customer_id=f"{i + 12340}") for i, d in enumerate(base)]  # ids "12340".."12345"
    later = [dict(docs[5], customer_id=12345, tenure=1), dict(docs[0], customer_id=" 12340 ")]
    chunks = [docs[:3], docs[3:] + later[:1], later[1:]]  # an int id, then a padded string id
    lenient = dataclasses.replace(config, max_reject_share=1.0)  # 2 of 8 rejected: over the default
    run = ShardRun(_model(loaded_model), lenient, dt.date(2024, 1, 31), tmp_path)

    run.score_all(chunks)

    rows = pa.concat_tables(run.ranked())
    assert sorted(rows.column("customer_id").to_pylist()) == [f"{12340 + i}" for i in range(6)]
    quarantined = [d for batch in run.quarantine_documents() for d in batch]
    assert [(q["customer_id"], q["reason"], q["source_row"]) for q in quarantined] == [
        ("12345", "duplicate_id", 6),
        ("12340", "duplicate_id", 7),
    ]
    assert [q["errors"][0]["kept_source_row"] for q in quarantined] == [5, 0]
    assert json.loads(quarantined[0]["record"])["customer_id"] == 12345  # the record as read
    assert run.tally.scored == 6 and run.tally.rejected == 2 and run.duplicates == 2


def test_too_many_rejects_fail_only_after_the_quarantine_is_staged(
    loaded_model: LoadedModel, config: scoring.ScoringConfig, tmp_path: Path
) -> None:
    dirty = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=400, seed=5, dirty_rate=0.5)))
    run = ShardRun(_model(loaded_model), config, dt.date(2024, 1, 31), tmp_path)

    with pytest.raises(TooManyRejects, match="the quarantine holds them"):
        run.score_all([dirty])

    staged = pa.concat_tables(run.quarantine_tables())
    assert staged.num_rows == run.tally.rejected > 0


def test_rows_carry_the_shard_that_wrote_them(
    loaded_model: LoadedModel, splits: Splits, config: scoring.ScoringConfig
) -> None:
    run = scoring.RunInfo(dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, tzinfo=dt.UTC), "churn", "7", "r", 2, 3)

    table = scoring.score(splits.test, loaded_model.compiled, config, run).table

    assert set(table.column("shard").to_pylist()) == {2} and set(table.column("shard_count").to_pylist()) == {3}
