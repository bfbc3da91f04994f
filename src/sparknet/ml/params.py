"""The Params of the pipeline stage, shared by the estimator and the model where they overlap.

All Params hold JSON-friendly values (strings, numbers, lists of ints) so Spark ML persistence
writes them as plain metadata.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
)

from sparknet.errors import ConfigError


def _param(name: str, doc: str, converter: Any) -> Param[Any]:
    return Param(Params._dummy(), name, doc, typeConverter=converter)


def _int_or_auto(value: Any) -> int | str:
    """tau: a positive number of steps, or 'auto' (the engine picks it per round)."""
    if value == "auto":
        return "auto"
    return TypeConverters.toInt(value)


class ModelParams(HasFeaturesCol, HasPredictionCol, HasProbabilityCol):
    """What scoring needs: the network, the input shape and how features become input."""

    network = _param(
        "network", "the network: a built-in name (lenet, cnn), a factory "
        "'package.module:function' or 'caffe:NET.prototxt'", TypeConverters.toString)
    inputShape = _param(
        "inputShape", "shape of one example as the network takes it, e.g. [1, 28, 28]; the "
        "features are reshaped to it", TypeConverters.toListInt)
    numClasses = _param(
        "numClasses", "number of classes; default: the network's number of outputs",
        TypeConverters.toInt)
    inputScale = _param(
        "inputScale", "network input = features * inputScale; default 1/255 for images, 1 for "
        "vectors and arrays", TypeConverters.toFloat)
    scoringBatchSize = _param(
        "scoringBatchSize", "rows per forward pass in transform (default 1024)",
        TypeConverters.toInt)
    threadsPerWorker = _param(
        "threadsPerWorker", "PyTorch threads per Python worker (default 1)", TypeConverters.toInt)
    device = _param("device", "cpu, cuda or auto (default cpu)",
                                TypeConverters.toString)
    invalidImages = _param(
        "invalidImages", "rows whose image bytes cannot be decoded: 'error' (default) stops "
        "fit with a count and an example; 'skip' leaves them out and counts them",
        TypeConverters.toString)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(network="lenet", scoringBatchSize=1024, threadsPerWorker=1,
                         device="cpu", invalidImages="error")

    def getNetwork(self) -> str:
        return self.getOrDefault(self.network)

    def getInputShape(self) -> tuple[int, ...]:
        if not self.isDefined(self.inputShape):
            raise ConfigError("inputShape is not set: give the shape one example has as network "
                              "input, e.g. inputShape=[1, 28, 28]")
        shape = tuple(self.getOrDefault(self.inputShape))
        if not shape or any(d < 1 for d in shape):
            raise ConfigError(f"inputShape={list(shape)} is invalid: give positive dims, "
                              "e.g. [1, 28, 28]")
        return shape

    def getScoringBatchSize(self) -> int:
        value = self.getOrDefault(self.scoringBatchSize)
        if value < 1:
            raise ConfigError(f"scoringBatchSize={value} is invalid: use at least 1, e.g. 1024")
        return value


class EstimatorParams(ModelParams, HasLabelCol, HasSeed):
    """The training settings, mapped one to one onto ``TrainConfig``."""

    numWorkers = _param("numWorkers", "K, partitions trained in parallel (2)",
                                    TypeConverters.toInt)
    tau = _param("tau", "local SGD steps per worker per round, or 'auto' (50)", _int_or_auto)
    batchSize = _param("batchSize", "mini-batch size of a local step (64)",
                                   TypeConverters.toInt)
    rounds = _param("rounds", "number of rounds (20); ignored when epochs is set",
                                TypeConverters.toInt)
    epochs = _param(
        "epochs", "train for this many passes over the data instead of a number of rounds: "
        "rounds = ceil(epochs * rows / (numWorkers * tau * batchSize))", TypeConverters.toFloat)
    optimizer = _param("optimizer", "local optimizer: sgd or adam (sgd)",
                                   TypeConverters.toString)
    learningRate = _param("learningRate", "local learning rate (0.01)",
                                        TypeConverters.toFloat)
    momentum = _param("momentum", "local SGD momentum (0.9)",
                                    TypeConverters.toFloat)
    weightDecay = _param("weightDecay", "L2 weight decay (0)",
                                       TypeConverters.toFloat)
    outerOptimizer = _param(
        "outerOptimizer", "how the driver combines workers: average, weighted or nesterov "
        "(average)", TypeConverters.toString)
    outerLearningRate = _param("outerLearningRate", "nesterov only (0.7)",
                                             TypeConverters.toFloat)
    outerMomentum = _param("outerMomentum", "nesterov only (0.9)",
                                         TypeConverters.toFloat)
    compression = _param("compression", "encoding of workers' changes: none, bf16 "
                                     "or int8 (none)", TypeConverters.toString)
    runDir = _param(
        "runDir", "optional local folder for metrics, checkpoints and the final weights",
        TypeConverters.toString)
    checkpointEvery = _param("checkpointEvery", "checkpoint every N rounds when "
                                         "runDir is set; 0: at the end only (10)",
                                         TypeConverters.toInt)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(seed=0, numWorkers=2, tau=50, batchSize=64, rounds=20, optimizer="sgd",
                         learningRate=0.01, momentum=0.9, weightDecay=0.0,
                         outerOptimizer="average", outerLearningRate=0.7, outerMomentum=0.9,
                         compression="none", checkpointEvery=10)
