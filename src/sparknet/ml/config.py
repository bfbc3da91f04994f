"""The pipeline stage's own settings (columns, input, scoring), beside ``TrainConfig``.

Declared with ``sparknet.config.setting`` like every config, so the stage's Params, their
documentation, getters and setters are derived from these fields (``sparknet.ml.params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sparknet.config import check_field_types, setting
from sparknet.errors import ConfigError

InvalidImages = Literal["error", "skip"]
Progress = Literal["auto", "bar", "log", "off"]
HandleInvalid = Literal["error", "keep", "skip"]


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    """What ``SparkNetModel.transform`` needs besides the network and its weights."""

    features_col: str = setting(
        "features", "features column: an ML Vector, array<numeric>, binary PNG/JPEG bytes or "
        "the struct of spark.read.format('image')", param="featuresCol")
    prediction_col: str = setting(
        "prediction", "output column of the prediction: the class (double) for multiclass and "
        "binary, the predicted labels' indices (array<double>, as "
        "MultilabelClassificationEvaluator reads them) for multilabel, the network's output "
        "for regression (a double for one output, else a vector); empty: not written",
        param="predictionCol")
    probability_col: str = setting(
        "probability", "output column of the class probabilities (an ML DenseVector; "
        "classifiers only); empty: not written", param="probabilityCol")
    raw_prediction_col: str = setting(
        "rawPrediction", "output column of the raw scores (logits; [-z, z] for binary) as "
        "Spark's classifiers write it (classifiers only); empty: not written",
        param="rawPredictionCol")
    predicted_label_col: str = setting(
        "predictedLabel", "output column of the predicted class's name, labels[prediction] (as "
        "IndexToString writes it), when the model has labels; empty: not written",
        param="predictedLabelCol")
    labels: tuple[str, ...] | None = setting(
        None, "class names, index i named labels[i] (as StringIndexerModel.labels); default: "
        "the label column's nominal attribute, which StringIndexer and "
        "sparknet.data.images.image_folder_frame write; saved with the model")
    input_shape: tuple[int, ...] | None = setting(
        None, "shape of one example as stored, e.g. [1, 28, 28]; the features are reshaped "
        "to it")
    num_classes: int | None = setting(
        None, "number of classes; default: the network's number of outputs")
    input_scale: float | None = setting(
        None, "network input = features * inputScale for networks without their own input "
        "preparation (a Caffe net's Data layer transform_param replaces it); default 1/255 for "
        "images, 1 for vectors and arrays")
    scoring_batch_size: int = setting(1024, "rows per forward pass in transform")
    handle_invalid: HandleInvalid = setting(
        "error", "rows whose features are null, hold NaN or infinite values, do not fit "
        "inputShape or are not decodable images (and, in fit, rows with a null or NaN label): "
        "error stops fit or transform with one line naming the problem; skip leaves them out "
        "(fit counts them in the summary; transform drops them); keep leaves them out of fit "
        "and gives them null outputs in transform (count them with filter(prediction IS "
        "NULL))",
        param="handleInvalid")
    invalid_images: InvalidImages = setting(
        "error", "rows whose image bytes cannot be decoded: error stops fit with a count and "
        "an example; skip leaves them out and counts them")

    def __post_init__(self) -> None:
        check_field_types(self, "")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels={list(self.labels)[:5]}... repeat a name: give each "
                              "class its own name")
        if self.scoring_batch_size < 1:
            raise ConfigError(f"scoringBatchSize={self.scoring_batch_size} is invalid: use at "
                              "least 1, e.g. 1024")


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """What ``SparkNetEstimator.fit`` needs besides ``TrainConfig`` and ``ScoringConfig``."""

    label_col: str = setting(
        "label", "label column: class indices (integers or integral doubles) for multiclass, "
        "0/1 for binary, 0/1 vectors for multilabel, numbers or vectors for regression",
        param="labelCol")
    validation_indicator_col: str | None = setting(
        None, "boolean column marking validation rows (true) as GBTClassifier's does: they are "
        "left out of training and evaluated every evalEvery rounds (validation metrics in the "
        "summary; early stopping with patience)", param="validationIndicatorCol")
    weight_col: str | None = setting(
        None, "column of row weights (numbers >= 0, as Spark's estimators take weightCol): each "
        "batch's loss is the weighted mean of its rows' losses (sum of w * loss over sum of "
        "w); unset: every row weighs 1. Validation metrics stay unweighted",
        param="weightCol")
    progress: Progress = setting(
        "auto", "progress while fit runs: bar (a progress bar), log (one line per evaluation "
        "or tenth of the rounds on stderr), off, or auto (bar on a terminal, log otherwise)")
    epochs: float | None = setting(
        None, "train for this many passes over the data instead of a number of rounds: "
        "rounds = ceil(epochs * rows / (numWorkers * tau * batchSize)); needs tau to be a "
        "number or 'epoch'")
    run_dir: str | None = setting(
        None, "optional local folder for metrics, checkpoints and the final weights")
    streamed: bool = setting(
        False, "write each worker's shard once to a file on its executor and read it a batch "
        "at a time, for data larger than memory (PNG/JPEG bytes stay encoded until a batch "
        "needs them; other sizes are resized to inputShape); classic sessions only")
    state_dir: str | None = setting(
        None, "Spark Connect only: a folder every executor can read, for the round's state "
        "of networks too large to travel inside the plan")
    mlflow_tracking_uri: str | None = setting(
        None, "MLflow tracking URI to log the fit to (parameters, a metric per round, the "
        "plot and the model) when no MLflow run is active; an active run is logged to "
        "without it", param="mlflowTrackingUri")
    mlflow_experiment: str | None = setting(
        None, "MLflow experiment of that run (default: MLflow's default experiment); setting "
        "it alone logs to MLflow's default tracking URI", param="mlflowExperiment")

    def __post_init__(self) -> None:
        check_field_types(self, "")
