"""``sparknet train --mlflow``: the run, its settings, rounds, files and model in MLflow.

The MLflow run's id is kept in the run directory (``mlflow.json``) so that ``--resume``
continues the same MLflow run. Logging never stops training (``sparknet.tracking``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparknet.cli.run_settings import RUN_FILE, RunSettings, save_mlflow_run, saved_mlflow_run
from sparknet.config import TrainConfig
from sparknet.engine.run_dir import TrainResult
from sparknet.errors import ConfigError
from sparknet.tracking import Tracker, TrackingTarget, check_tracking_uri, config_params, run_tags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="log the run to MLflow: settings, a metric per round, the plot, "
                             "config and model; URI: the tracking server (default "
                             "MLFLOW_TRACKING_URI or MLflow's local default)")
    parser.add_argument("--mlflow-experiment", default=None, metavar="NAME",
                        help="the MLflow experiment of the run (default: MLflow's default)")


def given(args: argparse.Namespace, table: dict[str, Any]) -> tuple[str | None, str | None]:
    """(tracking URI or None, experiment) from the flags and the [run] table, flags first."""
    uri = args.mlflow if args.mlflow is not None else table.get("mlflow")
    experiment = args.mlflow_experiment or table.get("mlflow_experiment")
    if experiment is not None and uri is None:
        raise ConfigError("--mlflow-experiment needs --mlflow (or [run] mlflow): give the "
                          "tracking URI, or --mlflow alone for MLflow's default")
    return uri, experiment


def resumed(run_dir: Path, uri: str | None) -> tuple[str | None, str | None]:
    """(tracking URI, run id) a resumed run logs to: its saved MLflow run, or a new one."""
    saved = saved_mlflow_run(run_dir)
    if saved is None:
        return uri, None
    if uri and uri != saved[0]:
        raise ConfigError(f"--resume: the run logs to MLflow at {saved[0]} (its mlflow.json), "
                          f"not {uri}: drop --mlflow or give {saved[0]}")
    return saved


def check(settings: RunSettings) -> None:
    """The URI and the mlflow package, before Spark starts."""
    if settings.mlflow is not None:
        check_tracking_uri(settings.mlflow)


def start(settings: RunSettings, config: TrainConfig, *, master: str) -> Tracker | None:
    """Opens (or reopens) the run and logs the settings and tags."""
    if settings.mlflow is None:
        return None
    tracker = Tracker.start(TrackingTarget(
        tracking_uri=settings.mlflow or None, experiment=settings.mlflow_experiment,
        run_id=settings.mlflow_run_id, run_name=settings.output.name))
    if not tracker.active:
        return tracker
    assert tracker.run_id is not None
    save_mlflow_run(settings.output, tracking_uri=str(tracker.tracking_uri),
                    run_id=tracker.run_id)
    data = settings.data
    params: dict[str, Any] = {**config_params(config), "run.data": data.kind,
                              "run.data_path": data.path, "run.train_limit": data.train_limit,
                              "run.test_limit": data.test_limit, "run.output": settings.output}
    params.update({f"run.{key}": value for key, value in data.columns.items()})
    tracker.log_params(params)
    tracker.set_tags(run_tags(config, master=master, fingerprint=_fingerprint(settings.output),
                              source="sparknet train"))
    return tracker


def finish(tracker: Tracker, result: TrainResult, output: Path) -> None:
    """The run directory's files and the final model (Spark and ONNX flavours)."""
    from sparknet.ml.mlflow_models import log_models
    from sparknet.ml.model import SparkNetModel

    tracker.log_results(result.config, result.metrics, run_dir=output)
    if tracker.active:
        log_models(tracker, SparkNetModel.fromRun(output))
    tracker.finish()


def _fingerprint(output: Path) -> str | None:
    """The fingerprint ``run.json`` recorded when the run started."""
    try:
        return str(json.loads((output / RUN_FILE).read_text())["data"]["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
