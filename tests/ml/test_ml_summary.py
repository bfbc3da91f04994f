"""Validation rows, early stopping, progress and the training summary through the Estimator,
and the summary through persistence, Pipeline and CrossValidator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.errors import DataError
from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet_testing.tabular import frame, split, standardized

pytestmark = pytest.mark.spark

PARAMS = {"network": "sparknet_testing.nets:mlp", "networkArgs": '{"outputs": 1}',
          "objective": "binary", "inputShape": [30], "numWorkers": 2, "tau": 10,
          "batchSize": 16, "rounds": 3, "evalEvery": 1, "learningRate": 0.05,
          "progress": "off"}


@pytest.fixture(scope="module")
def cancer(spark: Any) -> Any:
    x, y = standardized("breast_cancer")
    return frame(spark, x, y, is_validation=split(len(y))).cache()


@pytest.fixture(scope="module")
def fitted(cancer: Any) -> tuple[SparkNetEstimator, SparkNetModel]:
    estimator = SparkNetEstimator(validationIndicatorCol="is_validation", **PARAMS)
    return estimator, estimator.fit(cancer)


def _bce(model: SparkNetModel, df: Any) -> float:
    rows = model.transform(df).select("rawPrediction", "label").collect()
    z = np.array([r.rawPrediction[1] for r in rows])
    y = np.array([r.label for r in rows])
    return float(np.mean(np.logaddexp(0, z) - y * z))


def test_validation_rows_are_held_out_and_evaluated_every_round(
        cancer: Any, fitted: tuple[SparkNetEstimator, SparkNetModel]) -> None:
    estimator, model = fitted
    assert estimator.last_summary is not None
    assert sum(estimator.last_summary.shard_sizes) == cancer.filter("not is_validation").count()
    summary = model.summary
    assert model.hasSummary and summary.totalIterations == 3
    assert [m["round"] for m in summary.validationMetrics] == [1, 2, 3]
    # The engine's validation loss of the final weights is the loss of transform's scores.
    assert summary.validationMetrics[-1]["loss"] == pytest.approx(
        _bce(model, cancer.filter("is_validation")), rel=1e-5)
    assert len(summary.objectiveHistory) == len(summary.roundSeconds) == 3
    assert all(b > 0 for b in summary.bytesPerWorker)


def test_a_validation_dataframe_is_the_same_as_the_indicator_column(
        cancer: Any, fitted: tuple[SparkNetEstimator, SparkNetModel]) -> None:
    _, by_indicator = fitted
    by_frame = SparkNetEstimator(**PARAMS).fit(cancer.filter("not is_validation"),
                                               validation=cancer.filter("is_validation"))
    np.testing.assert_array_equal(by_frame.saved_network.floats,
                                  by_indicator.saved_network.floats)
    assert by_frame.summary.validationMetrics == by_indicator.summary.validationMetrics


def test_the_indicator_column_must_be_boolean(cancer: Any) -> None:
    with pytest.raises(DataError, match=r"validationIndicatorCol 'label' has type double"):
        SparkNetEstimator(validationIndicatorCol="label", **PARAMS).fit(cancer)


def test_early_stopping_through_the_estimator(spark: Any,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    x, y = standardized("breast_cancer")
    held_out = split(len(y))
    keep = held_out | (np.cumsum(~held_out) <= 40)  # 40 training rows: it overfits quickly
    df = frame(spark, x[keep], y[keep], is_validation=held_out[keep])
    params = {**PARAMS, "networkArgs": '{"hidden": 32, "outputs": 1}', "rounds": 40,
              "batchSize": 8, "learningRate": 0.1, "patience": 3, "progress": "log"}
    model = SparkNetEstimator(validationIndicatorCol="is_validation", **params).fit(df)
    summary = model.summary
    # Validation metrics are val_* in the summary, the progress lines and the closing line.
    assert {"val_loss", "val_accuracy"} <= set(summary.rounds[0])
    assert "test_loss" not in summary.rounds[0]
    losses = [m["loss"] for m in summary.validationMetrics]
    assert summary.stoppedEarly and summary.totalIterations < 40
    assert summary.bestRound == summary.validationMetrics[int(np.argmin(losses))]["round"]
    assert summary.totalIterations == summary.bestRound + 3
    err = capfd.readouterr().err
    assert ", val_loss " in err and "validation loss" not in err and "test_" not in err
    assert err.strip().splitlines()[-1] == (
        f"sparknet: stopped early after round {summary.totalIterations}: val_loss did not "
        f"improve for 3 evaluations; the model keeps the weights of round {summary.bestRound}, "
        "the best val_loss")
    # The model holds the best round's weights: its validation loss is the best one.
    assert _bce(model, df.filter("is_validation")) == pytest.approx(min(losses), rel=1e-5)


def test_the_summary_is_saved_and_loaded_with_the_model_and_pipeline(
        cancer: Any, fitted: tuple[SparkNetEstimator, SparkNetModel], tmp_path: Path) -> None:
    from pyspark.ml import Pipeline, PipelineModel

    _, model = fitted
    model.save(str(tmp_path / "model"))
    loaded = SparkNetModel.load(str(tmp_path / "model"))
    assert loaded.hasSummary and loaded.summary.to_dict() == model.summary.to_dict()
    assert loaded.summary.toPandas().shape[0] == 3

    pipeline = Pipeline(stages=[SparkNetEstimator(validationIndicatorCol="is_validation",
                                                  **PARAMS)]).fit(cancer)
    assert pipeline.stages[0].hasSummary
    pipeline.save(str(tmp_path / "pipeline"))
    stage = PipelineModel.load(str(tmp_path / "pipeline")).stages[0]
    assert stage.summary.to_dict() == pipeline.stages[0].summary.to_dict()

    png = loaded.summary.plot(tmp_path / "metrics.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bare = SparkNetModel._from_saved(model.saved_network)
    assert not bare.hasSummary
    with pytest.raises(RuntimeError, match="No training summary"):
        _ = bare.summary


@pytest.mark.slow
def test_cross_validator_best_model_has_a_summary(cancer: Any) -> None:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    estimator = SparkNetEstimator(**{**PARAMS, "rounds": 2, "evalEvery": 0})
    grid = ParamGridBuilder().addGrid(estimator.learningRate, [0.01, 0.05]).build()
    cv = CrossValidator(estimator=estimator, estimatorParamMaps=grid, numFolds=2, seed=0,
                        evaluator=BinaryClassificationEvaluator()).fit(cancer)
    best = cv.bestModel
    assert best.hasSummary and best.summary.totalIterations == 2


def test_progress_lines_when_not_a_terminal(cancer: Any,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    SparkNetEstimator(**{**PARAMS, "rounds": 2, "progress": "auto"}).fit(cancer)
    err = capfd.readouterr().err
    assert "sparknet: round 1/2, train_loss" in err and "sparknet: round 2/2" in err
    # From the first second: the data preparation is announced before any job.
    assert err.index("sparknet: preparing the data") < err.index("sparknet: data ready in")
    assert err.index("sparknet: data ready in") < err.index("sparknet: round 1/2")

