"""The promote stage: register the challenger and judge it against production on the same test rows.

Apart from the other stages because it is the one that talks to the model registry and may
move the `staging` and `production` aliases.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from churn import files, training
from churn.adapters import model_format
from churn.adapters.registry import PRODUCTION, STAGING, ModelRegistry
from churn.adapters.tracking import Tracking
from churn.errors import ModelNotFound
from churn.model import labels, to_frame
from churn.params import Params
from churn.promotion import Predictions, decide
from churn.settings import Settings
from churn_jobs import clients

if TYPE_CHECKING:  # only an annotation here; stages imports this module for run_all
    from churn_jobs.stages import Layout

log = logging.getLogger("churn_jobs.stages")  # the pipeline stages log under one name, as before the split


def promote(settings: Settings, params: Params, layout: Layout, apply: bool | None = None) -> dict[str, Any]:
    """Register the challenger and judge it against production on the same test rows.

    The aliases `staging` and `production` move to it only when it wins AND promotion is
    applied (`apply`, default `promotion.apply`, off: `dvc repro` never moves production).
    Running it again for the same run reuses that run's registered version.
    """
    apply = params.promotion.apply if apply is None else apply
    client = clients.mlflow_client(settings)
    tracking = Tracking(client, artifact_location=settings.artifact_location)
    registry = ModelRegistry(client, settings.model_name)
    trained = files.read_json(layout.metrics / "train.json")
    test_table = files.read_table(layout.split / "test.parquet")
    y = labels(test_table, params.schema)
    challenger_model = model_format.load(layout.model).trained
    challenger = Predictions(y, challenger_model.predict_proba(to_frame(test_table, challenger_model.schema)),
                             challenger_model.threshold)
    champion, champion_metrics, champion_version, note = None, None, None, ""
    try:
        loaded = registry.load(PRODUCTION)
        champion_version = loaded.version
        champion_metrics, probability, _ = training.evaluate(loaded.trained, test_table)
        champion = Predictions(y, probability, loaded.trained.threshold)
    except ModelNotFound:
        note = "no production model"
    except (KeyError, ValueError) as err:
        note = f"production model v{champion_version} cannot score this test set: {err}"
        log.warning("champion cannot be evaluated", extra={"reason": note})
    decision = decide(challenger, champion, params.promotion)
    run_id = trained["run_id"]
    applied = decision.promote and apply
    verdict = "promoted" if applied else ("passed" if decision.promote else "rejected")
    metric = decision.metric
    interval = {f"promotion.{metric}_delta": decision.delta, f"promotion.{metric}_delta_low": decision.delta_low,
                f"promotion.{metric}_delta_high": decision.delta_high}
    version_tags = {"verdict": verdict, "promotion.applied": str(applied).lower(), "promotion.reason": decision.reason,
                    **{k: f"{v:.6f}" for k, v in interval.items() if v is not None}}
    version = registered_version(registry, run_id)
    if version is None:
        tracking.artifacts(run_id, layout.model, "model")
        version = registry.register(run_id, "model", tags=version_tags, model_dir=layout.model)
    else:
        for key, value in version_tags.items():
            client.set_model_version_tag(registry.name, version, key, value)
    if applied:
        registry.set_alias(STAGING, version)
        registry.set_alias(PRODUCTION, version)
    record = {
        **decision.to_dict(),
        "applied": applied,
        "version": version,
        "champion_version": champion_version,
        "note": note,
        "champion_metrics": champion_metrics,
    }
    tracking.log(run_id, metrics={k: v for k, v in interval.items() if v is not None}, tags={
        "promotion.verdict": verdict,
        "promotion.applied": str(applied).lower(),
        "promotion.reason": decision.reason,
        "promotion.challenger": decision.challenger,
        "promotion.champion": decision.champion,
        "promotion.champion_version": champion_version,
        **{k: v for k, v in interval.items() if v is not None},
    })
    tracking.finish(run_id)
    files.write_json(record, layout.metrics / "promotion.json")
    if decision.promote and not apply:
        log.info("challenger wins but promotion is not applied (promotion.apply is false; use "
                 "`churn stage promote --apply` or `churn train --promote`)", extra={"version": version})
    log.info("promotion decided", extra={"promote": decision.promote, "applied": applied, "reason": decision.reason,
                                         "version": version})
    return record


def registered_version(registry: ModelRegistry, run_id: str) -> str | None:
    """The version already registered from this run (a second `promote` of the same run), if any."""
    found = [v.version for v in registry.versions() if v.run_id == run_id]
    return found[-1] if found else None
