"""MLflow tracking of one training run: parameters, a metric per round, tags and artifacts.

A ``Tracker`` talks to MLflow through ``MlflowClient`` (the fluent API's global run and
tracking URI are left alone) with short HTTP retries and timeouts, so a tracking server that
is gone costs seconds. It never fails training: its first error is one warning line, after
which it does nothing; the rounds are still in ``metrics.jsonl`` (or the training summary).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sparknet.config import TrainConfig
from sparknet.engine.run_dir import versions
from sparknet.errors import ConfigError, MissingDependencyError, require_package
from sparknet.metrics import plot_metrics
from sparknet.settings import train_settings

Record = dict[str, Any]
_log = logging.getLogger(__name__)

# Round record key -> MLflow metric (step = the round).
ROUND_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "val_loss",
                 "val_accuracy", "tau",
                 "samples", "round_seconds", "compute_seconds", "overhead_seconds",
                 "bytes_per_worker", "wall_seconds")
# MLflow reads these per request; its defaults (7 retries, 120 s timeout) make a dead server
# cost minutes. They apply only around sparknet's own calls, and only where the user set none.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
URI_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")
_MAX_PARAMS = 100  # per log_batch request (MLflow's limit)


def check_tracking_uri(uri: str | None, *, name: str = "--mlflow") -> None:
    """A tracking URI MLflow can use (None or "": MLflow's default), checked before Spark."""
    require_package("mlflow", extra="mlflow", needed_for=f"MLflow tracking ({name})")
    if not uri:
        return
    parsed = urlparse(uri)
    if len(parsed.scheme) <= 1:  # a local folder (or a Windows drive letter)
        return
    if parsed.scheme not in URI_SCHEMES:
        raise ConfigError(f"{name} {uri!r}: unknown scheme {parsed.scheme!r}; give "
                          "http(s)://HOST:PORT, sqlite:///FILE.db, a database URL, a folder "
                          "or databricks")
    if parsed.scheme in ("http", "https"):
        try:
            port = parsed.port
        except ValueError:
            port = -1
        if not parsed.hostname or port == -1:
            raise ConfigError(f"{name} {uri!r} is not a valid server address: give "
                              "http(s)://HOST:PORT, e.g. http://127.0.0.1:5000")


@dataclass(frozen=True, kw_only=True)
class TrackingTarget:
    """Where a run logs: a run to continue, an active run, or a new run in an experiment."""

    tracking_uri: str | None = None  # None: MLflow's default (MLFLOW_TRACKING_URI)
    experiment: str | None = None    # None: MLflow's default experiment
    run_id: str | None = None        # log into this existing run (resume, an active run)
    parent_run_id: str | None = None  # a new run nested under this one
    run_name: str | None = None
    owns_run: bool = True            # end the run when training ends
    keeps: str = "metrics.jsonl"     # where the rounds stay when logging stops


@contextlib.contextmanager
def short_http() -> Iterator[None]:
    """MLflow's HTTP limits lowered for the calls inside; the environment restored after.

    urllib3's retry warnings are silenced meanwhile: a failure is reported once, by us.
    """
    added = [key for key in HTTP_LIMITS if key not in os.environ]
    for key in added:
        os.environ[key] = HTTP_LIMITS[key]
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool_log.setLevel(level)
        for key in added:
            os.environ.pop(key, None)


class Tracker:
    """Logs one run to MLflow; after its first failure every call does nothing."""

    def __init__(self, target: TrackingTarget) -> None:
        self.target = target
        self.run_id: str | None = None
        self.tracking_uri = target.tracking_uri  # resolved when the run opens
        self._client: Any = None
        self._logged: dict[str, str] = {}  # params the run already has
        self.failed = False

    @classmethod
    def start(cls, target: TrackingTarget) -> Tracker:
        """Creates (or reopens) the run; a failure leaves a tracker that does nothing."""
        tracker = cls(target)
        tracker.guarded(tracker._open, opening=True)
        return tracker

    @property
    def active(self) -> bool:
        return self.run_id is not None and not self.failed

    def _open(self) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.tracking_uri = self.target.tracking_uri or mlflow.get_tracking_uri()
        client = MlflowClient(tracking_uri=self.tracking_uri)
        target = self.target
        if target.run_id is not None:
            run = client.get_run(target.run_id)
            self._logged = dict(run.data.params)
            if target.owns_run and run.info.status != "RUNNING":
                client.update_run(target.run_id, status="RUNNING")
            self._client, self.run_id = client, target.run_id
            return
        experiment_id = "0"
        if target.experiment:
            found = client.get_experiment_by_name(target.experiment)
            experiment_id = (found.experiment_id if found is not None
                             else client.create_experiment(target.experiment))
        tags = {} if target.parent_run_id is None else {"mlflow.parentRunId":
                                                        target.parent_run_id}
        run = client.create_run(experiment_id, tags=tags, run_name=target.run_name)
        self._client, self.run_id = client, run.info.run_id

    def guarded(self, action: Callable[[], None], *, opening: bool = False) -> None:
        if self.failed or (self.run_id is None and not opening):
            return
        try:
            with short_http():
                action()
        except Exception as exc:  # noqa: BLE001 - logging must never stop training
            self.failed = True
            reason = " ".join(str(exc).split())
            _log.warning("MLflow logging stopped (%s: %s); training goes on and every round "
                         "is still in %s", type(exc).__name__,
                         reason[:200] + ("..." if len(reason) > 200 else ""), self.target.keeps)

    def log_params(self, params: dict[str, Any]) -> None:
        """Every setting as a parameter; on a continued run, a changed value (engine.rounds
        on resume) becomes the tag ``changed.KEY`` since MLflow parameters are immutable."""
        from mlflow.entities import Param, RunTag

        texts = {key: param_text(value) for key, value in params.items()}
        new = [Param(k, v) for k, v in texts.items() if k not in self._logged]
        changed = [RunTag(f"changed.{k}", v) for k, v in texts.items()
                   if k in self._logged and self._logged[k] != v]

        def log() -> None:
            assert self.run_id is not None
            for start in range(0, len(new), _MAX_PARAMS):
                self._client.log_batch(self.run_id, params=new[start: start + _MAX_PARAMS])
            if changed:
                self._client.log_batch(self.run_id, tags=changed)
            self._logged.update(texts)

        self.guarded(log)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, param_text(v)) for k, v in tags.items() if v is not None]
        self.guarded(lambda: self._client.log_batch(self.run_id, tags=items))

    def log_record(self, record: Record) -> None:
        """One round's metrics in one request, the round as their step."""
        from mlflow.entities import Metric

        metrics = round_metrics(record)
        stamp, step = int(time.time() * 1000), int(record["round"])
        batch = [Metric(key, value, stamp, step) for key, value in metrics.items()]
        self.guarded(lambda: self._client.log_batch(self.run_id, metrics=batch))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.guarded(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        self.guarded(lambda: self._client.log_artifacts(self.run_id, str(folder), artifact_path))

    def log_results(self, config: TrainConfig, records: list[Record], *,
                    run_dir: Path | None) -> None:
        """The config, the metrics log and the plot: the run directory's, else made here."""
        if not self.active:
            return
        if run_dir is not None:
            for name in ("config.json", "run.json", "metrics.jsonl", "metrics.png"):
                if (run_dir / name).is_file():
                    self.log_artifact(run_dir / name)
            return
        with tempfile.TemporaryDirectory(prefix="sparknet-mlflow-") as tmp:
            folder = Path(tmp)
            (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
            (folder / "metrics.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in records))
            if records:
                with contextlib.suppress(MissingDependencyError):  # no plot without matplotlib
                    plot_metrics(records, folder / "metrics.png", title=config.model)
            for path in sorted(folder.iterdir()):
                self.log_artifact(path)

    def finish(self, *, failed: bool = False) -> None:
        """Ends the run if this tracker owns it (FAILED when training raised)."""
        if self.target.owns_run:
            status = "FAILED" if failed else "FINISHED"
            self.guarded(lambda: self._client.set_terminated(self.run_id, status=status))


def round_metrics(record: Record) -> dict[str, float]:
    """The MLflow metrics of one round record; ``samples_per_second`` over the wall time so
    far, as the progress bar shows it."""
    metrics = {key: float(record[key]) for key in ROUND_METRICS
               if record.get(key) is not None}
    wall = record.get("wall_seconds")
    if wall:
        metrics["samples_per_second"] = float(record["samples"]) / wall
    return metrics


def param_text(value: Any) -> str:
    """A setting's value as MLflow parameter text, written as ``str`` of the Param's value
    (a list for a tuple) so that it equals what ``mlflow.pyspark.ml.autolog`` logs."""
    return str(list(value) if isinstance(value, tuple) else value)


def config_params(config: TrainConfig) -> dict[str, Any]:
    """Every training setting by its dotted name (``engine.tau``), as in the TOML file."""
    values = config.to_dict()
    params: dict[str, Any] = {}
    for s in train_settings():
        value: Any = values
        for part in s.path:
            value = value[part]
        params[s.dotted] = value
    return params


def run_tags(config: TrainConfig, *, master: str | None, fingerprint: str | None,
             source: str) -> dict[str, Any]:
    """Versions, master, K and the data's fingerprint."""
    found = versions()
    return {"sparknet.version": found.get("sparknet"), "spark.version": found.get("pyspark"),
            "torch.version": found.get("torch"), "spark.master": master,
            "sparknet.K": config.engine.num_workers, "sparknet.data_fingerprint": fingerprint,
            "sparknet.source": source}
