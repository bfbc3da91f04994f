"""Where ``SparkNetEstimator.fit`` logs to MLflow, and what it logs besides the rounds.

The active MLflow run when there is one (``with mlflow.start_run():``, autolog); a second fit
inside the same active run (CrossValidator's folds) gets a child run of its own so that its
rounds do not overwrite the first fit's steps. Without an active run, the
``mlflowTrackingUri``/``mlflowExperiment`` Params name a new run; neither set: no tracking
and no import of MLflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from typing import TYPE_CHECKING, Any

from sparknet.config import TrainConfig
from sparknet.ml.config import FitConfig
from sparknet.tracking import Tracker, TrackingTarget, check_tracking_uri, config_params, run_tags

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from sparknet.data.convert import FrameSummary

# Active runs a fit of this process has logged into: a further fit gets a child run.
_runs_used: set[str] = set()


def check_fit_tracking(fit: FitConfig) -> None:
    """The tracking Params, checked before any Spark job."""
    if fit.mlflow_tracking_uri is not None or fit.mlflow_experiment is not None:
        check_tracking_uri(fit.mlflow_tracking_uri, name="mlflowTrackingUri")


def fit_target(fit: FitConfig) -> TrackingTarget | None:
    """The run this fit logs to, or None when there is nothing to log to."""
    mlflow = sys.modules.get("mlflow")  # an active run means MLflow is imported already
    active = mlflow.active_run() if mlflow is not None else None
    keeps = "metrics.jsonl" if fit.run_dir is not None else "the training summary"
    if active is not None:
        run_id = active.info.run_id
        uri = mlflow.get_tracking_uri()  # type: ignore[union-attr]
        if run_id not in _runs_used:
            _runs_used.add(run_id)
            return TrackingTarget(tracking_uri=uri, run_id=run_id, owns_run=False, keeps=keeps)
        return TrackingTarget(tracking_uri=uri, parent_run_id=run_id, keeps=keeps,
                              experiment=_experiment_name(active.info.experiment_id, uri),
                              run_name="sparknet fit")
    if fit.mlflow_tracking_uri is None and fit.mlflow_experiment is None:
        return None
    return TrackingTarget(tracking_uri=fit.mlflow_tracking_uri, experiment=fit.mlflow_experiment,
                          run_name="sparknet fit", keeps=keeps)


def _experiment_name(experiment_id: str, uri: str) -> str | None:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_experiment(experiment_id).name


def start_fit_tracking(target: TrackingTarget, *, config: TrainConfig, params: dict[str, Any],
                       dataset: DataFrame, summary: FrameSummary) -> Tracker:
    """The run opened with every Param and the tags; per-round logging follows."""
    tracker = Tracker.start(target)
    if not tracker.active:
        return tracker
    tracker.log_params({**config_params(config), **params})
    tracker.set_tags(run_tags(config, master=_master(dataset),
                              fingerprint=frame_fingerprint(dataset, summary),
                              source="SparkNetEstimator"))
    return tracker


def frame_fingerprint(dataset: DataFrame, summary: FrameSummary) -> str:
    """The DataFrame's plan (Spark's semantic hash), schema and rows per shard: which data
    and how it was dealt, not a hash of its contents (reading them twice would cost more)."""
    digest = hashlib.sha256(dataset.schema.json().encode())
    with contextlib.suppress(Exception):  # not every session (Spark Connect) offers it
        digest.update(str(dataset.semanticHash()).encode())
    digest.update(repr(list(summary.shard_sizes)).encode())
    return digest.hexdigest()[:32]


def _master(dataset: DataFrame) -> str | None:
    try:
        return str(dataset.sparkSession.conf.get("spark.master"))
    except Exception:  # noqa: BLE001 - a Connect session may not say
        return None
