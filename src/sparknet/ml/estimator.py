"""``SparkNetEstimator``: a Spark ML Estimator that trains with the SparkNet engine.

``fit(df)`` checks the Params and the network (a dry forward pass on the driver), validates and
caches the DataFrame as ``numWorkers`` shards (``sparknet.data.dataframe``), runs the engine's
``train`` and returns a ``SparkNetModel`` holding the trained weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.dataframe import check_columns, check_image_shape, default_scale
from sparknet.data.shards import InputSpec
from sparknet.errors import ConfigError
from sparknet.ml.model import SparkNetModel
from sparknet.ml.params import EstimatorParams
from sparknet.ml.persistence import SavedNetwork
from sparknet.models.registry import model_source

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from sparknet.data.dataframe import FrameSummary
    from sparknet.engine.trainer import TrainResult


class SparkNetEstimator(Estimator[SparkNetModel], EstimatorParams,
                        DefaultParamsReadable["SparkNetEstimator"], DefaultParamsWritable):
    """Trains a PyTorch network on a DataFrame with SparkNet's parallel SGD."""

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(self, *, featuresCol: str = "features", labelCol: str = "label",
                 predictionCol: str = "prediction", probabilityCol: str = "probability",
                 network: str = "lenet", inputShape: list[int] | None = None,
                 numClasses: int | None = None, inputScale: float | None = None,
                 numWorkers: int = 2, tau: int | str = 50, batchSize: int = 64, rounds: int = 20,
                 epochs: float | None = None, optimizer: str = "sgd", learningRate: float = 0.01,
                 momentum: float = 0.9, weightDecay: float = 0.0, outerOptimizer: str = "average",
                 outerLearningRate: float = 0.7, outerMomentum: float = 0.9,
                 compression: str = "none", seed: int = 0, runDir: str | None = None,
                 checkpointEvery: int = 10, scoringBatchSize: int = 1024,
                 threadsPerWorker: int = 1, device: str = "cpu",
                 invalidImages: str = "error") -> None:
        super().__init__()
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})
        self.last_summary: FrameSummary | None = None
        self.last_result: TrainResult | None = None

    def train_config(self, *, rounds: int | None = None) -> TrainConfig:
        """The engine configuration these Params describe (validated)."""
        get = self.getOrDefault
        return TrainConfig(
            model=get(self.network), seed=get(self.seed),
            engine=EngineConfig(num_workers=get(self.numWorkers), tau=get(self.tau),
                                batch_size=get(self.batchSize),
                                rounds=rounds if rounds is not None else get(self.rounds),
                                eval_every=0, device=get(self.device),
                                threads_per_worker=get(self.threadsPerWorker)),
            optimizer=OptimizerConfig(name=get(self.optimizer),
                                      lr=get(self.learningRate), momentum=get(self.momentum),
                                      weight_decay=get(self.weightDecay)),
            outer=OuterConfig(name=get(self.outerOptimizer),
                              lr=get(self.outerLearningRate), momentum=get(self.outerMomentum),
                              compression=get(self.compression)),
            checkpoint_every=get(self.checkpointEvery))

    def _fit(self, dataset: DataFrame) -> SparkNetModel:
        from sparknet.data.dataframe import dataframe_data
        from sparknet.engine.trainer import train

        # Everything cheap is checked before the first Spark job.
        config = self.train_config()
        shape = self.getInputShape()
        features, label = self.getFeaturesCol(), self.getLabelCol()
        kind = check_columns(dataset, features=features, label=label)
        check_image_shape(kind, shape, column=features)
        num_classes = network_outputs(config.model, shape)
        if self.isDefined(self.numClasses) and self.getOrDefault(self.numClasses) != num_classes:
            raise ConfigError(f"numClasses={self.getOrDefault(self.numClasses)} but network "
                              f"{config.model!r} has {num_classes} outputs: leave numClasses "
                              "unset or use a network with that many outputs")
        epochs = self.getOrDefault(self.epochs) if self.isDefined(self.epochs) else None
        if epochs is not None and not (math.isfinite(epochs) and epochs > 0):
            raise ConfigError(f"epochs={epochs} is invalid: use a positive number, e.g. 2")
        if epochs is not None and config.engine.tau == "auto":
            raise ConfigError("epochs needs a fixed tau to work out the number of rounds: "
                              "set tau to a number of steps, or set rounds instead of epochs")
        scale = (self.getOrDefault(self.inputScale) if self.isDefined(self.inputScale)
                 else default_scale(kind))
        spec = InputSpec(shape=shape, num_classes=num_classes, scale=scale)

        data, summary = dataframe_data(
            dataset, features=features, label=label, spec=spec,
            num_workers=config.engine.num_workers, batch_size=config.engine.batch_size,
            invalid_images=self.getOrDefault(self.invalidImages))
        self.last_summary = summary
        if epochs is not None and isinstance(config.engine.tau, int):
            per_round = (config.engine.num_workers * config.engine.tau *
                         config.engine.batch_size)
            rounds = max(1, math.ceil(epochs * sum(summary.shard_sizes) / per_round))
            config = dataclasses.replace(config, engine=dataclasses.replace(config.engine,
                                                                            rounds=rounds))
        run_dir = self.getOrDefault(self.runDir) if self.isDefined(self.runDir) else None
        try:
            result = train(data, config=config, run_dir=run_dir, progress=False)
        finally:
            data.release()
        self.last_result = result
        saved = SavedNetwork(network=config.model, input_shape=shape, num_classes=num_classes,
                             input_scale=scale, layout=result.layout, floats=result.floats,
                             ints=result.ints)
        return self._copyValues(SparkNetModel._from_saved(saved))


def network_outputs(network: str, shape: tuple[int, ...]) -> int:
    """The network's number of outputs for one input of ``shape``, from a dry forward pass."""
    module = model_source(network).build().eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *shape)))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise ConfigError(f"network {network!r} cannot take inputShape={list(shape)} ({first}): "
                          "set inputShape to the shape the network expects, e.g. [1, 28, 28]"
                          ) from None
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise ConfigError(f"network {network!r} returns shape {tuple(out.shape)} for one input; "
                          "a classifier must return [batch, classes] logits with classes >= 2")
    return int(out.shape[1])

