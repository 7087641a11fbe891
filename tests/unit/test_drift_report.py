"""The drift report's renderer: PSI as the metrics compute it, shards that merge into the run's
counts, bars drawn to scale, a page that is self-contained and safe with hostile values."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pytest

from churn import drift_report, profile, scoring
from churn.drift_report import DriftCounts, bin_labels, from_tally, merge, render, svg_bars
from churn.params import load_params
from churn.profile import ProfileCounter, build_profile
from churn.schema import Schema
from churn.scoring import Scored
from churn.validation import validate

SCHEMA = Schema.from_dict(
    {
        "features": [
            {"name": "spend", "type": "float", "min": 0, "nullable": True},
            {"name": "plan", "type": "category", "values": ["basic", "pro", "team"]},
        ]
    }
)
SVG = "{http://www.w3.org/2000/svg}"


def sample(n: int, seed: int, shift: float = 0.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 30.0, n) * (1 + shift)
    spend[rng.random(n) < 0.05] = np.nan
    plan_p = np.array([0.5, 0.3, 0.2]) * (1 - shift) + np.array([0.1, 0.2, 0.7]) * shift
    plan = rng.choice(3, n, p=plan_p / plan_p.sum()).astype(np.float64)
    return {"spend": spend, "plan": plan}, np.clip(rng.beta(2, 5, n) + 0.3 * shift, 0, 1)


@pytest.fixture(scope="module")
def reference() -> dict:
    return build_profile(SCHEMA, *sample(20_000, seed=1))


def counts_of(reference: dict, parts: list[tuple[dict[str, np.ndarray], np.ndarray]], shard: int = 0,
              shard_count: int = 1, unseen: dict | None = None) -> tuple[DriftCounts, ProfileCounter]:
    counter = ProfileCounter(SCHEMA, reference)
    for features, scores in parts:
        counter.add(features, scores)
    n = int(counter.rows)
    counts = DriftCounts(
        "2024-01-31", shard_count, [shard], ["churn 7"], n + 3, n, 3, {"high": n // 4, "low": n - n // 4},
        list(counter.profile["score"]["edges"]), counter.score_counts.tolist(), counter.profile,
        {k: v.tolist() for k, v in counter.counts.items()}, unseen or {}, "2024-01-31T02:00:00+00:00",
    )
    return counts, counter


def psi_cells(page: str) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r'data-feature="([^"]+)" data-psi="([^"]+)"', page)}


@pytest.mark.parametrize("policy", ["missing", "reject"])
def test_unseen_categories_are_the_validators_counts_of_every_record_read(reference: dict, policy: str) -> None:
    """Counted as the validator finds them, whether the records were scored (missing) or quarantined (reject):
    not parsed back from the quarantine, which holds none of the records scored as missing."""
    schema = Schema.from_dict({"features": [{**f.to_dict(), **({"unknown": policy} if not f.is_numeric else {})}
                                            for f in SCHEMA.features]})
    records = [{"customer_id": str(i), "spend": spend, "plan": plan} for i, (spend, plan) in enumerate(
        [(1.0, "Gold"), (-1.0, "Gold"), (2.0, "gold plan"), (3.0, "pro"), (None, "basic"), (4.0, " Gold")])]
    result = validate(records, schema)
    tally = scoring.Tally(scoring.ScoringConfig.from_params(load_params()), schema, ProfileCounter(schema, reference))
    tally.add(Scored(pa.table({}), np.full(result.clean.num_rows, 0.5), np.zeros(result.clean.num_rows, int), 0,
                     profile.feature_arrays(result.clean, schema)), result.clean, result.rejected.num_rows,
              result.unseen_counts())

    counts = from_tally("2024-01-31", 0, 1, "churn 7", tally, tally.unseen)

    assert counts.unseen == {"plan": {"Gold": 2, "gold plan": 1, " Gold": 1}}  # the spend=-1 record too
    assert counts.unseen_policy == {"plan": policy}
    assert tally.unseen_share() == {"plan": pytest.approx(4 / 6)}
    page = render(DriftCounts.from_json(counts.to_json()))
    treated = "(scored as missing)" if policy == "missing" else "(rejected)"
    assert f"<td>plan</td><td>Gold</td><td>2</td><td>{treated}</td>" in page
    assert result.rejected.num_rows == (1 if policy == "missing" else 4)


def test_the_report_shows_each_features_psi_as_the_metrics_compute_it_most_drifted_first(reference: dict) -> None:
    counts, counter = counts_of(reference, [sample(5_000, seed=2, shift=0.6)])
    features_psi, score_psi = counter.psi()

    page = render(counts)
    shown = psi_cells(page)

    assert shown == pytest.approx(features_psi, abs=0) and list(shown) == sorted(shown, key=lambda f: -shown[f])
    assert float(re.search(r'data-score-psi="([^"]+)"', page)[1]) == pytest.approx(score_psi, abs=0)
    assert max(shown.values()) > drift_report.DRIFTED and 'class="drifted"' in page


def test_merged_shards_give_the_counts_and_psi_of_one_pass_over_all_rows(reference: dict) -> None:
    first, second = sample(3_000, seed=3, shift=0.2), sample(2_000, seed=4, shift=0.2)
    whole, counter = counts_of(reference, [first, second])
    shard_0, _ = counts_of(reference, [first], shard=0, shard_count=2, unseen={"plan": {"Gold": 2}})
    shard_1, _ = counts_of(reference, [second], shard=1, shard_count=2, unseen={"plan": {"Gold": 1, "Free": 4}})

    merged = merge([DriftCounts.from_json(shard_0.to_json()), DriftCounts.from_json(shard_1.to_json())])

    assert merged.shards == [0, 1] and merged.rows_scored == whole.rows_scored == 5_000
    assert merged.unseen == {"plan": {"Gold": 3, "Free": 4}}
    assert merged.psi()[0] == pytest.approx(counter.psi()[0], abs=1e-12)
    assert merged.psi()[1] == pytest.approx(counter.psi()[1], abs=1e-12)
    assert "(the whole run)" in render(merged) and "shard 0 of 2" in render(shard_0)


def test_the_report_is_self_contained_and_escapes_values_from_the_data(reference: dict) -> None:
    hostile = '<script>alert("x")</script>'
    counts, _ = counts_of(reference, [sample(1_000, seed=5)], unseen={"plan": {hostile: 7}})

    page = render(counts)

    assert hostile not in page and "&lt;script&gt;" in page
    assert "<script" not in page and "src=" not in page and "http://" not in page.replace(SVG[1:-1], "")
    assert page.count("<svg") == 1 + len(SCHEMA.features)  # the score, then each feature
    assert "Unseen categories" in page and ">7<" in page


def test_bars_are_drawn_to_scale_for_the_reference_and_the_run() -> None:
    svg = ET.fromstring(svg_bars(["a", "b", "c"], [0.5, 0.25, 0.25], [0.2, 0.4, 0.4]))
    heights = {kind: [float(r.get("height")) for r in svg.iter(f"{SVG}rect") if r.get("class") == kind]
               for kind in ("reference", "run")}

    assert heights["reference"][0] == pytest.approx(2 * heights["reference"][1])
    assert heights["run"][1] == pytest.approx(2 * heights["run"][0])
    assert max(heights["reference"] + heights["run"]) == pytest.approx(heights["reference"][0])  # the tallest: 0.5
    assert [t.text for t in svg.iter(f"{SVG}text")][-3:] == ["a", "b", "c"]


def test_a_model_without_a_reference_profile_still_reports_scores_and_bands() -> None:
    counts = DriftCounts("2024-01-31", 1, [0], ["churn 3"], 100, 100, 0, {"high": 10, "low": 90},
                         [0.5], [80.0, 20.0], None)

    page = render(counts)

    assert "drift is not measured" in page and psi_cells(page) == {}
    assert page.count("<svg") == 1 and "80.0%" in page and 'data-score-psi="None"' in page


def test_bins_are_labelled_by_their_edges_with_missing_last() -> None:
    assert bin_labels([12, 24.5]) == ["< 12", "12-24.5", ">= 24.5", "missing"]
    assert bin_labels([0.5], missing=False) == ["< 0.5", ">= 0.5"]
    assert bin_labels([]) == ["all", "missing"]
