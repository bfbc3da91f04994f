"""``SparkNetEstimator``: a Spark ML Estimator that trains with the SparkNet engine.

``fit(df)`` checks the Params and the network (a dry forward pass on the driver), validates and
caches the DataFrame as ``numWorkers`` shards (``sparknet.data.dataframe``), runs the engine's
``train`` and returns a ``SparkNetModel`` holding the trained weights. Its Params are the
fields of ``TrainConfig``, ``ScoringConfig`` and ``FitConfig`` (``sparknet.ml.params``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparknet.config import TrainConfig
from sparknet.data.dataframe import check_columns, check_image_shape, default_scale
from sparknet.data.shards import InputSpec
from sparknet.errors import ConfigError
from sparknet.ml.model import SparkNetModel
from sparknet.ml.params import (
    SettingParams,
    estimator_settings,
    fit_config_of,
    train_config_of,
    with_accessors,
)
from sparknet.ml.persistence import SavedNetwork
from sparknet.models.kinds import ModelKind
from sparknet.models.registry import resolve_model

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from sparknet.data.dataframe import FrameSummary
    from sparknet.engine.loop import TrainResult


@with_accessors(estimator_settings())
class SparkNetEstimator(SettingParams, Estimator[SparkNetModel],
                        DefaultParamsReadable["SparkNetEstimator"], DefaultParamsWritable):
    """Trains a PyTorch network on a DataFrame with SparkNet's parallel SGD."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.last_summary: FrameSummary | None = None
        self.last_result: TrainResult | None = None

    def train_config(self, *, rounds: int | None = None) -> TrainConfig:
        """The engine configuration these Params describe (validated)."""
        return train_config_of(self, rounds=rounds)

    def _fit(self, dataset: DataFrame) -> SparkNetModel:
        from sparknet.data.dataframe import dataframe_data
        from sparknet.engine.trainer import train

        # Everything cheap is checked before the first Spark job.
        config, scoring, fit = self.train_config(), self.scoring_config(), fit_config_of(self)
        shape = self.getInputShape()
        features, label = scoring.features_col, fit.label_col
        kind = check_columns(dataset, features=features, label=label)
        check_image_shape(kind, shape, column=features)
        model = resolve_model(config.model)
        num_classes = network_outputs(model, model.network_shape(shape))
        if scoring.num_classes is not None and scoring.num_classes != num_classes:
            raise ConfigError(f"numClasses={scoring.num_classes} but network "
                              f"{config.model!r} has {num_classes} outputs: leave numClasses "
                              "unset or use a network with that many outputs")
        _check_epochs(fit.epochs, config, rounds_set=self.isSet(self.rounds))  # type: ignore[attr-defined]
        scale = scoring.input_scale if scoring.input_scale is not None else default_scale(kind)
        spec = InputSpec(shape=shape, num_classes=num_classes, scale=scale)

        data, summary = dataframe_data(
            dataset, features=features, label=label, spec=spec, kind=kind,
            num_workers=config.engine.num_workers, batch_size=config.engine.batch_size,
            invalid_images=scoring.invalid_images, streamed=fit.streamed,
            decode_threads=config.engine.decode_threads)
        self.last_summary = summary
        if fit.epochs is not None and isinstance(config.engine.tau, int):
            per_round = (config.engine.num_workers * config.engine.tau *
                         config.engine.batch_size)
            rounds = max(1, math.ceil(fit.epochs * sum(summary.shard_sizes) / per_round))
            config = dataclasses.replace(config, engine=dataclasses.replace(config.engine,
                                                                            rounds=rounds))
        try:
            result = train(data, config=config, model=model, run_dir=fit.run_dir,
                           progress=False, state_dir=fit.state_dir)
        finally:
            data.release()
        self.last_result = result
        saved = SavedNetwork(network=config.model, input_shape=shape, num_classes=num_classes,
                             input_scale=scale, layout=result.layout, floats=result.floats,
                             ints=result.ints)
        return self._copyValues(SparkNetModel._from_saved(saved))


def _check_epochs(epochs: float | None, config: TrainConfig, *, rounds_set: bool) -> None:
    if epochs is None:
        return
    if not (math.isfinite(epochs) and epochs > 0):
        raise ConfigError(f"epochs={epochs} is invalid: use a positive number, e.g. 2")
    if rounds_set:
        raise ConfigError("epochs and rounds are both set: set one of them (epochs works out "
                          "the rounds from the number of rows)")
    if config.engine.tau == "auto":
        raise ConfigError("epochs needs a fixed tau to work out the number of rounds: "
                          "set tau to a number of steps, or set rounds instead of epochs")


def network_outputs(network: str | ModelKind, shape: tuple[int, ...]) -> int:
    """The network's number of outputs for one input of ``shape``, from a dry forward pass."""
    model = resolve_model(network)
    module = model.build().eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *shape)))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise ConfigError(f"network {model.key!r} cannot take inputShape={list(shape)} "
                          f"({first}): set inputShape to the shape the network expects, e.g. "
                          "[1, 28, 28]") from None
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise ConfigError(f"network {model.key!r} returns shape {tuple(out.shape)} for one "
                          "input; a classifier must return [batch, classes] logits with "
                          "classes >= 2")
    return int(out.shape[1])
