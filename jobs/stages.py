"""The training pipeline's stages (ingest -> validate -> train -> evaluate -> promote).

Each stage reads the previous one's files and writes its own, so DVC can skip what did
not change; `run_all` chains them in one process for `train` (SageMaker, Kubernetes).
The promote stage, the one that talks to the model registry, is in `promotion_stage`.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from churn import files, training
from churn.adapters import model_format
from churn.adapters.tracking import Tracking
from churn.errors import ConfigError, TooManyRejects
from churn.model import labels, to_frame
from churn.params import Params
from churn.settings import Settings
from churn.validation import describe, to_table, validate
from churn_jobs import clients
from churn_jobs.promotion_stage import promote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes, relative to one root (the repo, or a temp dir)."""

    root: Path

    @property
    def source(self) -> Path:
        return self.root / "data" / "customers.parquet"

    @property
    def snapshot(self) -> Path:
        return self.root / "data" / "snapshot"

    @property
    def split(self) -> Path:
        return self.root / "data" / "split"

    @property
    def model(self) -> Path:
        return self.root / "models" / "challenger"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


def ingest(settings: Settings, params: Params, layout: Layout, source: Path | None = None) -> dict[str, Any]:
    """Read labelled customers (MongoDB if configured, else a file), validate, snapshot."""
    schema = params.schema
    if settings.mongodb_uri and source is None:
        from pymongo.errors import OperationFailure

        from churn.adapters.mongo import CustomerStore

        store = CustomerStore(clients.mongo_database(settings), settings.customers_collection)
        fields = [schema.id_field, *schema.feature_names, schema.label_field]
        query = {**settings.customers_query, schema.label_field: {"$exists": True, "$ne": None}}
        try:
            tables = [to_table(batch, schema) for batch in store.batches(query, fields)]
        except OperationFailure as err:  # the server refused the query: a bad filter, not an outage
            raise ConfigError(f"MongoDB refused the ingest query (CUSTOMERS_FILTER={settings.customers_filter!r}): "
                              f"{str(err).splitlines()[0][:200]}") from err
        if not tables:
            raise ConfigError(f"no labelled customers in {settings.mongodb_database}.{settings.customers_collection}")
        raw = pa.concat_tables(tables, promote_options="permissive")
        origin = f"mongodb:{settings.mongodb_database}.{settings.customers_collection}"
    else:
        path = source or layout.source
        raw = files.read_table(path)
        if schema.label_field in raw.column_names:
            raw = raw.filter(pc.is_valid(raw.column(schema.label_field)))
        origin = str(path)
    result = validate(raw, schema, require_label=True)
    files.write_parquet(result.clean, layout.snapshot / "clean.parquet")
    files.write_parquet(result.rejected, layout.snapshot / "rejects.parquet")
    summary = {
        "source": origin,
        "rows": raw.num_rows,
        "clean": result.clean.num_rows,
        "rejected": result.rejected.num_rows,
        "data_hash": files.sha256_file(layout.snapshot / "clean.parquet"),
    }
    unknown = training.unknown_categories(result.rejected)
    unseen = result.unseen_counts(clean_only=True)  # `unknown: missing`: kept, the value missing
    summary["rejects_by_reason"] = training.rejects_by_reason(result.rejected)
    summary["unknown_categories"] = unknown
    summary["unseen_categories"] = unseen
    files.write_json(summary, layout.snapshot / "snapshot.json")
    log.info("ingested customers", extra=summary)
    if result.rejected.num_rows:
        log.warning("rejected customers", extra={"first": describe(result.rejected)})
    if unknown:
        log.warning(f"training rows with category values not in the schema were dropped: "
                    f"{training.describe_unknown(unknown)}", extra={"unknown_categories": unknown})
    if unseen:
        log.warning(f"training rows with category values not in the schema are kept with the value missing "
                    f"(unknown: missing), as scoring treats them: {training.describe_unknown(unseen)}",
                    extra={"unseen_categories": unseen})
    return summary


def validate_split(params: Params, layout: Layout) -> dict[str, Any]:
    """Quality gates on the snapshot, then the stratified train/validation/test split."""
    from churn.scoring import ScoringConfig

    snapshot = files.read_json(layout.snapshot / "snapshot.json")
    limit = ScoringConfig.from_params(params).max_reject_share
    share = snapshot["rejected"] / max(snapshot["rows"], 1)
    unknown = snapshot.get("unknown_categories", {})
    unseen = snapshot.get("unseen_categories", {})
    if share > limit:
        reasons = ", ".join(f"{reason} x{count}" for reason, count in snapshot.get("rejects_by_reason", {}).items())
        named = f"; unknown categories: {training.describe_unknown(unknown)}" if unknown else ""
        raise TooManyRejects(
            f"{share:.1%} of labelled customers were rejected ({snapshot['rejected']} of {snapshot['rows']}, "
            f"limit {limit:.1%}, scoring.max_reject_share): {reasons}{named}"
        )
    clean = files.read_table(layout.snapshot / "clean.parquet")
    own_valid = layout.snapshot / "valid_clean.parquet"
    splits = training.split(clean, params, files.read_table(own_valid) if own_valid.exists() else None)
    for name in ("train", "valid", "test"):
        files.write_parquet(getattr(splits, name), layout.split / f"{name}.parquet")
    label = params.schema.label_field
    summary = {
        "rows": clean.num_rows,
        "rejected": snapshot["rejected"],
        "reject_share": share,
        "rejects_by_reason": snapshot.get("rejects_by_reason", {}),
        "unknown_categories": unknown,
        "unknown_category_rows": sum(sum(values.values()) for values in unknown.values()),
        "unseen_categories": unseen,
        "unseen_category_rows": sum(sum(values.values()) for values in unseen.values()),
        "train_rows": splits.train.num_rows,
        "valid_rows": splits.valid.num_rows,
        "test_rows": splits.test.num_rows,
        "churn_rate": pc.mean(pc.cast(clean.column(label), pa.float64())).as_py(),
    }
    files.write_json(summary, layout.metrics / "validation.json")
    return summary


def train(settings: Settings, params: Params, layout: Layout) -> dict[str, Any]:
    """Fit the model, save it in MLflow format, start its MLflow run."""
    train_table = files.read_table(layout.split / "train.parquet")
    valid_table = files.read_table(layout.split / "valid.parquet")
    outcome = training.train(params, train_table, valid_table)
    snapshot = files.read_json(layout.snapshot / "snapshot.json")
    if layout.model.exists():
        import shutil

        shutil.rmtree(layout.model)
    extra = {
        "reference_profile": outcome.reference_profile,
        "data_hash": snapshot["data_hash"],
        "git_commit": git_commit(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    model_format.save(outcome.model, layout.model, to_frame(valid_table, outcome.model.schema), extra)
    tracking = Tracking(clients.mlflow_client(settings), artifact_location=settings.artifact_location)
    lineage = {"git_commit": extra["git_commit"], "data_hash": snapshot["data_hash"], "source": snapshot["source"]}
    run_id = tracking.start("train", tags=lineage)
    search = outcome.search
    tuning_config = {k: v for k, v in asdict(params.tuning).items() if k != "space"}
    logged_params = {
        **asdict(params.model),
        "calibration": asdict(params.calibration),
        "split": asdict(params.split),
        "tuning": tuning_config,
    }
    validation = files.read_json(layout.metrics / "validation.json") if (layout.metrics / "validation.json").exists() \
        else {}
    logged_metrics = {
        "valid": outcome.valid_metrics,
        "cv": outcome.cv,
        "train_seconds": outcome.seconds,
        "trees": outcome.model.best_iteration,
        "search": {"trials": len(search.trials) if search else 0, "seconds": search.seconds if search else 0.0,
                   "budget_seconds": search.budget_seconds if search else 0.0},
        "validation": {k: validation[k] for k in ("reject_share", "rejected", "unknown_category_rows",
                                                  "unseen_category_rows") if k in validation},
        "schema": {"learned": {name: found.to_dict() for name, found in outcome.learned.items()}},
    }
    tags = {f"validation.unknown_category.{name}": training.describe_unknown({name: values})
            for name, values in validation.get("unknown_categories", {}).items()}
    tags.update({f"validation.unseen_category.{name}": training.describe_unknown({name: values})
                 for name, values in validation.get("unseen_categories", {}).items()})
    tags.update({f"schema.learned.{name}": learned_values_text(outcome.model.schema.by_name[name].values)
                 for name in outcome.learned})
    if search and search.fallback:
        tags["search.fallback"] = search.fallback
    tracking.log(run_id, params={**logged_params, "chosen": outcome.chosen}, metrics=logged_metrics, tags=tags)
    for trial in outcome.search.trials if outcome.search else []:
        child = tracking.start(f"trial-{trial['number']}", tags=lineage, parent=run_id)
        tracking.log(child, params=trial["params"], metrics={"cv": trial["cv"], "seconds": trial["seconds"]})
        tracking.finish(child)
    summary = {
        "run_id": run_id,
        "seconds": outcome.seconds,
        "trees": outcome.model.best_iteration,
        "threshold": outcome.model.threshold,
        "valid": outcome.valid_metrics,
        "cv": outcome.cv,
        "chosen": outcome.chosen,
        "trials": len(outcome.search.trials) if outcome.search else 0,
        "search_fallback": outcome.search.fallback if outcome.search else "",
        "importance": outcome.importance,
        "learned_categories": {name: {**found.to_dict(), "values": list(outcome.model.schema.by_name[name].values)}
                               for name, found in outcome.learned.items()},
    }
    files.write_json(summary, layout.metrics / "train.json")
    return summary


def evaluate(settings: Settings, params: Params, layout: Layout) -> dict[str, Any]:
    """Test-split metrics and plots for the challenger, logged to its run."""
    from churn import evaluation

    loaded = model_format.load(layout.model)
    test_table = files.read_table(layout.split / "test.parquet")
    result, probability, uncalibrated = training.evaluate(loaded.trained, test_table)
    trained = files.read_json(layout.metrics / "train.json")
    y = labels(test_table, params.schema)
    evaluation.write_plots(layout.plots, y, probability, loaded.trained.threshold, trained["importance"], uncalibrated)
    evaluation.write_curves(layout.plots, y, probability, loaded.trained.threshold, uncalibrated)
    files.write_json(result, layout.metrics / "test.json")
    tracking = Tracking(clients.mlflow_client(settings), artifact_location=settings.artifact_location)
    tracking.log(trained["run_id"], metrics={"test": result})
    tracking.artifacts(trained["run_id"], layout.plots, "plots")
    tracking.artifacts(trained["run_id"], layout.metrics / "test.json", "metrics")
    return result


def run_all(settings: Settings, params: Params, layout: Layout, source: Path | None = None,
            apply: bool | None = None) -> dict[str, Any]:
    """Every stage in order, in this process; `apply` as for `promote`."""
    ingest(settings, params, layout, source)
    validate_split(params, layout)
    train(settings, params, layout)
    evaluate(settings, params, layout)
    return promote(settings, params, layout, apply)


def learned_values_text(values: tuple[str, ...], limit: int = 20) -> str:
    """`51 values: CA, TX, ...`: a learned value list as an MLflow tag (the model carries all of them)."""
    shown = ", ".join(values[:limit])
    return f"{len(values)} values: {shown}" + (f", ... {len(values) - limit} more" if len(values) > limit else "")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        import os

        return os.environ.get("GIT_COMMIT", "unknown")
