"""The nightly drift report: each feature's and the score's distribution against the training
reference, with PSI, unseen categories and risk bands, as one self-contained HTML page.

Rendered from our own counts (churn.profile), not a reporting library: `DriftCounts` is
one shard's counts (JSON, additive, so a sharded run's shards merge into one report) and
`render` draws them as inline SVG bars (no scripts, no external files, opens anywhere).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from churn.profile import psi

WATCH, DRIFTED = 0.1, 0.2  # PSI: below WATCH stable; DRIFTED is the alert's threshold (observability/)
TOP_UNSEEN = 5  # unseen values listed per field
TREATMENT = {"reject": "(rejected)", "missing": "(scored as missing)"}  # by the feature's `unknown` policy


@dataclass
class DriftCounts:
    """What one shard saw, against the model's reference profile (ProfileCounter's padded copy)."""

    run_date: str
    shard_count: int
    shards: list[int]
    models: list[str]  # "name version" of each distinct model
    rows_read: int
    rows_scored: int
    rows_rejected: int
    bands: dict[str, int]
    score_edges: list[float]
    score_counts: list[float]
    reference: dict[str, Any] | None  # {"features": {...}, "score": {...}} or None: no reference saved
    feature_counts: dict[str, list[float]] = field(default_factory=dict)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> unseen value -> records read
    generated_at: str = ""
    # field -> what happened to records with an unseen value: "reject" (quarantined) or "missing"
    # (scored with the value missing); empty in counts written before the policy existed.
    unseen_policy: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DriftCounts:
        return cls(**json.loads(text))

    def psi(self) -> tuple[dict[str, float], float | None]:
        """PSI of each feature and of the score (profile.psi on the counts), as the metrics push them."""
        if self.reference is None:
            return {}, None
        features = {
            name: psi(self.reference["features"][name]["shares"], np.asarray(counts))
            for name, counts in self.feature_counts.items()
        }
        return features, psi(self.reference["score"]["shares"], np.asarray(self.score_counts))


def merge(parts: Sequence[DriftCounts]) -> DriftCounts:
    """The counts of a whole run from its shards' (same date and shard count)."""
    first = parts[0]
    unseen: dict[str, Counter[str]] = {}
    bands: Counter[str] = Counter()
    for part in parts:
        bands.update(part.bands)
        for name, values in part.unseen.items():
            unseen.setdefault(name, Counter()).update(values)
    return DriftCounts(
        run_date=first.run_date,
        shard_count=first.shard_count,
        shards=sorted(s for p in parts for s in p.shards),
        models=sorted({m for p in parts for m in p.models}),
        rows_read=sum(p.rows_read for p in parts),
        rows_scored=sum(p.rows_scored for p in parts),
        rows_rejected=sum(p.rows_rejected for p in parts),
        bands=dict(bands),
        score_edges=first.score_edges,
        score_counts=_add(p.score_counts for p in parts),
        reference=first.reference,
        feature_counts={name: _add(p.feature_counts[name] for p in parts) for name in first.feature_counts},
        unseen={name: dict(values) for name, values in unseen.items()},
        generated_at=max(p.generated_at for p in parts),
        unseen_policy={name: policy for p in parts for name, policy in p.unseen_policy.items()},
    )


def _add(lists: Iterable[Sequence[float]]) -> list[float]:
    return [float(v) for v in np.sum(np.asarray(list(lists), dtype=np.float64), axis=0)]


# -- rendering ----------------------------------------------------------------------------------


def status(value: float | None) -> str:
    if value is None:
        return "not measured"
    return "stable" if value < WATCH else "watch" if value < DRIFTED else "drifted"


def bin_labels(edges: Sequence[float], missing: bool = True) -> list[str]:
    """'< 12', '12-24', ..., '>= 60' (and 'missing') for numeric bins cut at `edges`."""
    if not edges:
        labels = ["all"]
    else:
        labels = [f"< {_num(edges[0])}"]
        labels += [f"{_num(lo)}-{_num(hi)}" for lo, hi in zip(edges, edges[1:])]
        labels.append(f">= {_num(edges[-1])}")
    return labels + (["missing"] if missing else [])


def _num(value: float) -> str:
    return f"{value:.4g}"


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [float(c) / total if total else 0.0 for c in counts]


def svg_bars(labels: Sequence[str], reference: Sequence[float] | None, current: Sequence[float]) -> str:
    """Grouped bars of shares per bin: the reference (grey) beside this run (blue), inline SVG."""
    step, bar, top, plot = 44, 16, 22, 120
    width, height = 40 + step * len(labels) + 110, top + plot + 95
    peak = max([*current, *(reference or []), 1e-9])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'font-family="sans-serif" font-size="10">',
             f'<text x="0" y="{top + 4}">{peak:.0%}</text>',
             f'<line x1="34" y1="{top + plot}" x2="{40 + step * len(labels)}" y2="{top + plot}" stroke="#999"/>',
             '<rect x="40" y="2" width="10" height="10" fill="#b0b0b0"/><text x="54" y="11">training reference</text>'
             '<rect x="160" y="2" width="10" height="10" fill="#2a6fdb"/><text x="174" y="11">this run</text>']
    for i, label in enumerate(labels):
        x = 40 + i * step
        for offset, shares, colour, kind in ((0, reference, "#b0b0b0", "reference"), (bar, current, "#2a6fdb", "run")):
            if shares is None:
                continue
            h = plot * shares[i] / peak
            tip = f"{html.escape(label)}: {shares[i]:.1%}"
            parts.append(f'<rect class="{kind}" x="{x + offset}" y="{top + plot - h:.1f}" width="{bar}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{tip}</title></rect>')
        parts.append(f'<text x="{x + 6}" y="{top + plot + 12}" '
                     f'transform="rotate(35 {x + 6} {top + plot + 12})">{html.escape(label[:28])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], attrs: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row, attr in zip(rows, attrs or [""] * len(rows)):
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{attr}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _distribution(title: str, labels: list[str], reference: list[float] | None, counts: Sequence[float],
                  value: float | None) -> str:
    current = _shares(counts)
    numbers = _table(["bin", "reference", "this run"],
                     [[label, "" if reference is None else f"{reference[i]:.1%}", f"{current[i]:.1%}"]
                      for i, label in enumerate(labels)])
    psi_text = "" if value is None else f" — PSI {value:.3f} ({status(value)})"
    return (f'<section><h3>{html.escape(title)}{psi_text}</h3>{svg_bars(labels, reference, current)}'
            f"<details><summary>numbers</summary>{numbers}</details></section>")


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.stable{color:#1a7f37}"
         ".watch{color:#9a6700}.drifted{color:#cf222e;font-weight:bold}section{margin:1.5em 0}")


def render(counts: DriftCounts) -> str:
    """The report as one self-contained HTML page."""
    features, score_psi = counts.psi()
    shards = ("the whole run" if len(counts.shards) == counts.shard_count
              else f"shard {', '.join(map(str, counts.shards))} of {counts.shard_count}")
    title = f"Churn scoring drift report {counts.run_date} ({shards})"
    share = counts.rows_rejected / counts.rows_read if counts.rows_read else 0.0
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
           f"<p>Model {html.escape(', '.join(counts.models))}. Rows read {counts.rows_read:,}, scored "
           f"{counts.rows_scored:,}, rejected {counts.rows_rejected:,} ({share:.2%}). Generated "
           f"{html.escape(counts.generated_at)}. PSI below {WATCH} is stable, from {DRIFTED} drifted (the alert's "
           "threshold); each feature is compared with the training data the model learned from.</p>"]
    if counts.reference is None:
        out.append("<p><b>The model carries no reference profile: drift is not measured.</b></p>")
    ordered = sorted(features.items(), key=lambda item: -item[1])
    rows, attrs = [], []
    for name, value in ordered:
        missing = _shares(counts.feature_counts[name])[-1]
        unseen = sum(counts.unseen.get(name, {}).values())
        shown = f"{unseen / counts.rows_read:.2%} {TREATMENT.get(counts.unseen_policy.get(name, ''), '')}".strip()
        rows.append([name, f"{value:.3f}", status(value), f"{missing:.1%}",
                     shown if counts.rows_read and unseen else ""])
        attrs.append(f' class="{status(value)}" data-feature="{html.escape(name)}" data-psi="{value!r}"')
    if rows:
        out.append("<h2>Features, most drifted first</h2>")
        out.append(_table(["feature", "PSI", "status", "missing", "unseen values"], rows, attrs))
    score_labels = bin_labels(counts.score_edges, missing=False)
    reference_scores = counts.reference["score"]["shares"] if counts.reference else None
    out.append("<h2>Churn probability</h2>")
    out.append(_distribution("score distribution", score_labels, reference_scores, counts.score_counts, score_psi)
               .replace("<section>", f'<section data-score-psi="{score_psi!r}">', 1))
    band_total = sum(counts.bands.values())
    out.append(_table(["risk band", "customers", "share"],
                      [[b, f"{n:,}", f"{n / band_total:.1%}" if band_total else ""] for b, n in counts.bands.items()]))
    if counts.unseen:
        out.append("<h2>Unseen categories</h2><p>Values the model was not trained on, in the records read. Per "
                   "the feature's <code>unknown</code> policy in params.yaml, such a record was rejected (see "
                   "<code>churn risk quarantine</code>) or scored with the value missing.</p>")
        out.append(_table(["field", "value", "records", "treated as"], [
            [name, value, f"{n:,}", TREATMENT.get(counts.unseen_policy.get(name, ""), "")]
            for name, values in sorted(counts.unseen.items())
            for value, n in sorted(values.items(), key=lambda item: -item[1])[:TOP_UNSEEN]
        ]))
    if counts.reference is not None:
        out.append("<h2>Distributions (grey: training reference, blue: this run)</h2>")
        for name, value in ordered:
            reference = counts.reference["features"][name]
            labels = (bin_labels(reference["edges"]) if "edges" in reference
                      else [*map(str, reference["values"]), "missing"])
            out.append(_distribution(name, labels, list(reference["shares"]), counts.feature_counts[name], value))
    out.append("</body></html>")
    return "\n".join(out)


def now_text(clock: dt.datetime | None = None) -> str:
    return (clock or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()


def from_tally(
    run_date: str, shard: int, shard_count: int, model: str, tally: Any, unseen: dict[str, dict[str, int]]
) -> DriftCounts:
    """One shard's counts from its run's scoring.Tally (its ProfileCounter holds the reference;
    without one, the score histogram of the tally, and no comparison); `unseen` is the tally's
    count of values outside each category's list, as the validator found them."""
    counter = tally.profile
    if counter is None:
        # Tally buckets count p <= 0.1, 0.2, ..., 1.0 (and > 1.0, never): ten bins cut at 0.1 ... 0.9.
        buckets = [float(c) for c in tally.buckets]
        scores, edges = [*buckets[:9], sum(buckets[9:])], [round(0.1 * i, 1) for i in range(1, 10)]
        reference, features = None, {}
    else:
        scores = [float(c) for c in counter.score_counts]
        edges = [float(e) for e in counter.profile["score"]["edges"]]
        reference = counter.profile
        features = {name: [float(c) for c in values] for name, values in counter.counts.items()}
    policy = {spec.name: spec.unknown for spec in tally.schema.categorical}
    return DriftCounts(
        run_date, shard_count, [shard], [model], tally.read, tally.scored, tally.rejected, dict(tally.bands),
        edges, scores, reference, features, unseen, now_text(), policy,
    )
