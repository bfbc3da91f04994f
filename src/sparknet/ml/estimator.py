"""``SparkNetEstimator``: a Spark ML Estimator that trains with the SparkNet engine.

``fit(df)`` checks the Params and the network (a dry forward pass on the driver), validates and
caches the DataFrame as ``numWorkers`` shards (``sparknet.data.sources``), runs the engine's
``train`` and returns a ``SparkNetModel`` holding the trained weights. Its Params are the
fields of ``TrainConfig``, ``ScoringConfig`` and ``FitConfig`` (``sparknet.ml.params``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsReader, DefaultParamsWritable

from sparknet.config import TrainConfig
from sparknet.data.columns import (
    check_columns,
    check_image_shape,
    check_weight_column,
    default_scale,
    label_form,
)
from sparknet.data.shards import InputSpec
from sparknet.engine.defaults import resolve_epoch_tau, resolve_momentum_policy, work_statement
from sparknet.errors import ConfigError, DataError
from sparknet.ml.config import FitConfig, ScoringConfig
from sparknet.ml.mlflow_models import log_models
from sparknet.ml.model import SparkNetModel
from sparknet.ml.params import (
    SettingParams,
    estimator_settings,
    fit_config_of,
    fit_settings,
    scoring_settings,
    train_config_of,
    with_accessors,
)
from sparknet.ml.persistence import SavedNetwork
from sparknet.ml.shipping import check_executor_python, ship_user_modules
from sparknet.ml.summary import SparkNetTrainingSummary, validation_record
from sparknet.ml.tracking import check_fit_tracking, fit_target, start_fit_tracking
from sparknet.models.kinds import network_outputs
from sparknet.models.objectives import Objective, resolve_objective
from sparknet.models.registry import check_file_references, model_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructField

    from sparknet.data.columns import FeatureKind
    from sparknet.data.convert import FrameSummary
    from sparknet.data.placement import SparkData
    from sparknet.engine.run_dir import TrainResult
    from sparknet.tracking import Tracker


@with_accessors(estimator_settings())
class SparkNetEstimator(SettingParams, Estimator[SparkNetModel],
                        DefaultParamsReadable["SparkNetEstimator"], DefaultParamsWritable):
    """Trains a PyTorch network on a DataFrame with SparkNet's parallel SGD."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.last_summary: FrameSummary | None = None
        self.last_result: TrainResult | None = None
        self._validation: DataFrame | None = None

    def train_config(self, *, rounds: int | None = None) -> TrainConfig:
        """The engine configuration these Params describe (validated)."""
        return train_config_of(self, rounds=rounds)

    @classmethod
    def read(cls) -> DefaultParamsReader[SparkNetEstimator]:
        """A reader that refuses a saved estimator naming code this process did not name."""
        return _EstimatorReader(cls)

    def fit(self, dataset: DataFrame, params: Any = None, *,
            validation: DataFrame | None = None) -> Any:
        """Spark ML's ``fit``; ``validation``: rows to evaluate on every ``evalEvery`` rounds
        (instead of, or besides, the rows ``validationIndicatorCol`` marks)."""
        self._validation = validation
        try:
            return super().fit(dataset, params)
        finally:
            self._validation = None

    def _fit(self, dataset: DataFrame) -> SparkNetModel:
        from sparknet.data.sources import dataframe_data

        # Everything cheap is checked before the first Spark job.
        config, scoring, fit = self.train_config(), self.scoring_config(), fit_config_of(self)
        shape = self.getInputShape()
        features, label = scoring.features_col, fit.label_col
        objective = resolve_objective(config.objective)
        train_df, validation_df = _split_validation(dataset, fit.validation_indicator_col,
                                                    getattr(self, "_validation", None))
        kind = check_columns(train_df, features=features, label=label)
        check_label(objective, train_df, label)
        check_image_shape(kind, shape, column=features)
        model = model_of(config)
        outputs = network_outputs(model, shape)
        objective.check_outputs(outputs, network=model.key)
        if scoring.num_classes is not None and scoring.num_classes != outputs:
            raise ConfigError(f"numClasses={scoring.num_classes} but network "
                              f"{config.model!r} has {outputs} outputs: leave numClasses "
                              "unset or use a network with that many outputs")
        labels = class_labels(scoring.labels, train_df.schema[label], objective, outputs)
        _check_epochs(fit.epochs, config, rounds_set=self.isSet(self.rounds))  # type: ignore[attr-defined]
        check_fit_tracking(fit)
        scale = scoring.input_scale if scoring.input_scale is not None else default_scale(kind)
        spec = InputSpec(shape=shape, num_classes=outputs, scale=scale,
                         label_width=label_width_of(objective, outputs, train_df, label),
                         binary_targets=objective.binary_targets,
                         row_weights=fit.weight_col is not None)
        if fit.weight_col is not None:
            objective.check_row_weights()
            check_weight_column(train_df, fit.weight_col)
        if validation_df is not None:
            check_columns(validation_df, features=features, label=label)
            check_label(objective, validation_df, label)
        say = _announcer(fit.progress)
        say(f"preparing the data: checking the executors, then counting and dealing the rows "
            f"into {config.engine.num_workers} shards")
        started = time.monotonic()
        # The first job: the executors' Python must import sparknet (one line if not).
        check_executor_python(dataset.sparkSession)
        # Built-in names are not references: shipping skips them.
        ship_user_modules(dataset.sparkSession, [config.model, config.objective])

        data, summary = dataframe_data(
            train_df, features=features, label=label, spec=spec, kind=kind,
            num_workers=config.engine.num_workers, batch_size=config.engine.batch_size,
            invalid_images=scoring.invalid_images, streamed=fit.streamed,
            decode_threads=config.engine.decode_threads,
            skip_invalid=scoring.handle_invalid != "error", weight=fit.weight_col)
        self.last_summary = summary
        skipped = f", {sum(summary.skipped.values())} invalid left out" if summary.skipped else ""
        say(f"data ready in {time.monotonic() - started:.1f}s: {sum(summary.shard_sizes)} rows "
            f"in {len(summary.shard_sizes)} shards{skipped}; training")
        try:
            if validation_df is not None:
                data = _with_validation(data, validation_df, features=features, label=label,
                                        kind=kind, spec=spec, scoring=scoring)
            config = _rounds_for_epochs(
                resolve_momentum_policy(
                    resolve_epoch_tau(config, summary.shard_sizes),
                    has_momentum=model.local_optimizer(config.optimizer).has_momentum),
                fit, summary)
            say(f"training {work_statement(config, sum(summary.shard_sizes))}")
            target = fit_target(fit)
            tracker = None if target is None else start_fit_tracking(
                target, config=config, params=stage_params(scoring, fit), dataset=dataset,
                summary=summary)
            result = _train_tracked(data, config=config, model=model, fit=fit, tracker=tracker)
        finally:
            data.release()
        self.last_result = result
        if result.stopped_early and result.best_round is not None:
            monitor = f"val_{config.engine.monitor}"
            say(f"stopped early after round {len(result.metrics)}: {monitor} did not improve "
                f"for {config.engine.patience} evaluations; the model keeps the weights of "
                f"round {result.best_round}, the best {monitor}")
        saved = SavedNetwork(network=config.model, input_shape=shape, num_classes=outputs,
                             input_scale=scale, layout=result.layout, floats=result.floats,
                             ints=result.ints, objective=objective.name,
                             network_args=config.model_args, labels=labels)
        fitted = self._copyValues(SparkNetModel._from_saved(saved))
        fitted._summary = SparkNetTrainingSummary(
            result.metrics, objective=objective.name, best_round=result.best_round,
            stopped_early=result.stopped_early)
        if tracker is not None:
            tracker.log_results(config, result.metrics,
                                run_dir=None if fit.run_dir is None else Path(fit.run_dir))
            log_models(tracker, fitted)
            tracker.finish()
        return fitted


def _rounds_for_epochs(config: TrainConfig, fit: FitConfig, summary: FrameSummary
                       ) -> TrainConfig:
    """With ``epochs`` and a fixed tau, the rounds that pass over the data that many times."""
    if fit.epochs is None or not isinstance(config.engine.tau, int):
        return config
    per_round = config.engine.num_workers * config.engine.tau * config.engine.batch_size
    rounds = max(1, math.ceil(fit.epochs * sum(summary.shard_sizes) / per_round))
    return dataclasses.replace(config, engine=dataclasses.replace(config.engine, rounds=rounds))


def _train_tracked(data: SparkData, *, config: TrainConfig, model: Any, fit: FitConfig,
                   tracker: Tracker | None) -> TrainResult:
    """``train`` with the progress bar and, when tracking, every round sent to MLflow; a
    failed fit ends its MLflow run as failed."""
    from sparknet.engine.trainer import train

    bar, on_record = progress_reporter(fit.progress, config)
    try:
        return train(data, config=config, model=model, run_dir=fit.run_dir, progress=bar,
                     state_dir=fit.state_dir, on_record=_both(on_record, tracker),
                     eval_name="val")
    except BaseException:
        if tracker is not None:
            tracker.finish(failed=True)
        raise


def stage_params(scoring: ScoringConfig, fit: FitConfig) -> dict[str, Any]:
    """The stage's own settings by Param name (the training settings go by dotted name)."""
    values = {**dataclasses.asdict(scoring), **dataclasses.asdict(fit)}
    return {s.param: values[s.path[-1]] for s in scoring_settings() + fit_settings()}


def _both(report: Callable[[dict[str, Any]], None] | None,
          tracker: Tracker | None) -> Callable[[dict[str, Any]], None] | None:
    """The progress report and the tracker's per-round logging, in that order, each given
    the record with its evaluation named ``val_*``."""
    if report is None and tracker is None:
        return None

    def on_record(record: dict[str, Any]) -> None:
        if report is not None:
            report(record)
        if tracker is not None:
            tracker.log_record(record)

    def renamed(record: dict[str, Any]) -> None:
        on_record(validation_record(record))  # evaluations on validation rows: val_*

    return renamed


def _split_validation(dataset: DataFrame, indicator: str | None,
                      validation: DataFrame | None) -> tuple[DataFrame, DataFrame | None]:
    """(training rows, validation rows or None) from the indicator column and/or a frame."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    if indicator is None:
        return dataset, validation
    fields = {f.name: f.dataType for f in dataset.schema.fields}
    if indicator not in fields:
        raise DataError(f"validationIndicatorCol {indicator!r} is not in the DataFrame "
                        f"(columns: {sorted(fields)}): set it to a boolean column or unset it")
    if not isinstance(fields[indicator], BooleanType):
        raise DataError(f"validationIndicatorCol {indicator!r} has type "
                        f"{fields[indicator].simpleString()}: it must be boolean (true marks "
                        "a validation row)")
    marked = F.coalesce(F.col(indicator), F.lit(False))
    rows = dataset.filter(marked)
    if validation is not None:
        rows = rows.unionByName(validation, allowMissingColumns=True)
    return dataset.filter(~marked), rows


def check_label(objective: Objective, df: DataFrame, label: str) -> None:
    """The label column (a checked one: numbers or vectors) has the form the objective takes."""
    data_type = df.schema[label].dataType
    form = label_form(data_type)
    assert form is not None, "check_columns refuses other label columns"
    objective.check_label_column(form, column=label, type_name=data_type.simpleString())


def label_width_of(objective: Objective, outputs: int, df: DataFrame, label: str) -> int:
    """The width of the stored targets (0: class indices), checked against the network."""
    vector = label_form(df.schema[label].dataType) == "vector"
    return objective.label_width(outputs, vector_column=vector, column=label)


def _with_validation(data: SparkData, validation: DataFrame, *, features: str, label: str,
                     kind: FeatureKind, spec: InputSpec, scoring: ScoringConfig) -> SparkData:
    """The training data with the validation rows as its evaluation shards."""
    from sparknet.data.sources import dataframe_data

    shards = min(data.num_workers, 4)
    try:
        checked, summary = dataframe_data(  # validation metrics are unweighted
            validation, features=features, label=label,
            spec=dataclasses.replace(spec, row_weights=False), kind=kind,
            num_workers=shards, batch_size=1, invalid_images=scoring.invalid_images,
            skip_invalid=scoring.handle_invalid != "error")
    except DataError as exc:
        raise DataError(f"validation rows: {exc}") from None
    return dataclasses.replace(data, test=checked.train, test_size=sum(summary.shard_sizes))


def progress_reporter(choice: str, config: TrainConfig
                      ) -> tuple[bool, Callable[[dict[str, Any]], None] | None]:
    """(show a bar, per-round reporter) for the fit's ``progress`` setting."""
    if choice == "auto":
        choice = "bar" if sys.stderr.isatty() else "log"
    if choice != "log":
        return choice == "bar", None
    total = config.engine.rounds
    every = max(1, total // 10)

    def report(record: dict[str, Any]) -> None:
        evaluated = record.get("val_loss") is not None
        if not (evaluated or record["round"] % every == 0 or record["round"] == total):
            return
        parts = [f"sparknet: round {record['round']}/{total}",
                 f"train_loss {record['train_loss']:.4f}"]
        if evaluated:
            parts.append(f"val_loss {record['val_loss']:.4f}")
        if record.get("val_accuracy") is not None:
            parts.append(f"val_accuracy {100 * record['val_accuracy']:.2f}%")
        parts.append(f"{record['wall_seconds']:.1f}s")
        print(", ".join(parts), file=sys.stderr, flush=True)

    return False, report


def _announcer(choice: str) -> Callable[[str], None]:
    """One stderr line per fit stage (data preparation, early stopping) unless progress is
    off: the fit speaks from its first second, before the round bar or log starts."""
    def say(message: str) -> None:
        if choice != "off":
            print(f"sparknet: {message}", file=sys.stderr, flush=True)

    return say


def _check_epochs(epochs: float | None, config: TrainConfig, *, rounds_set: bool) -> None:
    if epochs is None:
        return
    if not (math.isfinite(epochs) and epochs > 0):
        raise ConfigError(f"epochs={epochs} is invalid: use a positive number, e.g. 2")
    if rounds_set:
        raise ConfigError("epochs and rounds are both set: set one of them (epochs works out "
                          "the rounds from the number of rows)")
    if config.engine.tau == "auto":
        raise ConfigError("epochs needs a tau known before training to work out the number "
                          "of rounds: set tau to a number of steps or 'epoch', or set rounds "
                          "instead of epochs")


def class_labels(given: tuple[str, ...] | None, field: StructField, objective: Objective,
                 outputs: int) -> tuple[str, ...] | None:
    """The class names the model keeps: ``labels`` if set, else the label column's nominal
    attribute (what StringIndexer and ``image_folder_frame`` write), else None."""
    most = objective.class_count(outputs)
    if given is None:
        attribute = (field.metadata or {}).get("ml_attr", {})
        names = attribute.get("vals") if attribute.get("type") == "nominal" else None
        if not names or not most or len(names) > most:
            return None  # a regression target or a count that does not fit: no names
        return tuple(str(name) for name in names)
    if not most:
        raise ConfigError(f"labels are set but objective {objective.name!r} does not predict "
                          "one class: unset labels")
    if len(given) > most:
        raise ConfigError(f"labels names {len(given)} classes but the network predicts one of "
                          f"{most}: give at most {most} names")
    return given


class _EstimatorReader(DefaultParamsReader["SparkNetEstimator"]):
    """Loads a saved estimator's Params; its network and objective are data unless this
    process named the factory (``sparknet.models.trust_factory``): a later ``fit`` would
    import them."""

    def load(self, path: str) -> SparkNetEstimator:
        estimator = super().load(path)
        values = {s.dotted: estimator.getOrDefault(s.param) for s in estimator_settings()
                  if s.reference is not None}
        check_file_references(values, origin=f"saved SparkNetEstimator {path}")
        return estimator
