"""The Params contract of the pipeline stage: values checked when set, the model carries the
estimator's Params, networkArgs as a dict, objective as a function, numClasses as a number and
multilabel predictions that Spark's MultilabelClassificationEvaluator reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.errors import ConfigError
from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet_testing import nets
from sparknet_testing.tabular import frame, standardized

PARAMS = {"network": "sparknet_testing.nets:mlp", "inputShape": [4], "numWorkers": 2,
          "tau": 5, "batchSize": 16, "rounds": 2, "progress": "off"}



@pytest.mark.parametrize(("call", "match"), [
    (lambda e: e.setTau(0), r"^tau: tau=0 is invalid: use tau >= 1"),
    (lambda e: e.setLearningRate(-1.0), r"^learningRate: optimizer.lr=-1.0 is invalid"),
    (lambda e: e.setNumWorkers(0), r"^numWorkers: num_workers=0 is invalid"),
    (lambda e: e.setScoringBatchSize(0), r"^scoringBatchSize: scoringBatchSize=0 is invalid"),
    (lambda e: e.setParams(momentum=1.5), r"^momentum: optimizer.momentum=1.5 is invalid"),
    (lambda e: SparkNetEstimator(tau=-3), r"^tau: tau=-3 is invalid"),
])
def test_invalid_values_are_refused_when_set(call: Any, match: str) -> None:
    estimator = SparkNetEstimator()
    with pytest.raises(ValueError, match=match) as failure:
        call(estimator)
    assert isinstance(failure.value, ConfigError) and "\n" not in str(failure.value)
    assert estimator.getTau() == SparkNetEstimator().getTau()  # nothing was set


def test_settings_that_only_clash_together_wait_for_fit() -> None:
    # networkArgs needs a factory network, which may be set next.
    estimator = SparkNetEstimator(networkArgs={"inputs": 4})
    estimator.setNetwork("sparknet_testing.nets:mlp")  # type: ignore[attr-defined]
    assert estimator.train_config().model_args == '{"inputs": 4}'
    with pytest.raises(ConfigError, match="keyword arguments are for a factory network"):
        SparkNetEstimator(networkArgs={"inputs": 4}).train_config()


def test_network_args_as_a_dict_and_objective_as_a_function() -> None:
    estimator = SparkNetEstimator(networkArgs={"outputs": 1, "inputs": 4},
                                  objective=nets.mse_loss)
    assert json.loads(estimator.getNetworkArgs()) == {"inputs": 4, "outputs": 1}  # type: ignore[attr-defined]
    assert estimator.getObjective() == "sparknet_testing.nets:mse_loss"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"objective=.*cannot be named in another process"):
        SparkNetEstimator(objective=lambda: None)


@pytest.mark.spark
def test_the_model_carries_the_estimators_params(spark: Any, tmp_path: Path) -> None:
    x, y = standardized("iris")
    estimator = SparkNetEstimator(**PARAMS, networkArgs={"inputs": 4, "outputs": 3},
                                  learningRate=0.05, momentum=0.8, seed=3)
    model = estimator.fit(frame(spark, x, y))
    assert (model.getTau(), model.getLearningRate(), model.getMomentum(),  # type: ignore[attr-defined]
            model.getSeed(), model.getRounds()) == (5, 0.05, 0.8, 3, 2)  # type: ignore[attr-defined]
    assert model.numClasses == model.getNumClasses() == 3 and model.numFeatures == 4
    model.save(str(tmp_path / "m"))
    loaded = SparkNetModel.load(str(tmp_path / "m"))
    assert (loaded.getTau(), loaded.getLearningRate(), loaded.numClasses) == (5, 0.05, 3)  # type: ignore[attr-defined]


@pytest.mark.spark
@pytest.mark.slow
def test_best_model_tells_the_winning_settings(spark: Any) -> None:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    x, y = standardized("iris")
    estimator = SparkNetEstimator(**PARAMS, networkArgs={"inputs": 4, "outputs": 3})
    grid = ParamGridBuilder().addGrid(estimator.learningRate, [0.001, 0.1]).build()  # type: ignore[attr-defined]
    search = TrainValidationSplit(estimator=estimator, estimatorParamMaps=grid, seed=0,
                                  evaluator=MulticlassClassificationEvaluator()).fit(
        frame(spark, x, y))
    best = search.bestModel
    metrics = dict(zip((0.001, 0.1), search.validationMetrics, strict=True))
    assert best.getLearningRate() == max(metrics, key=metrics.get)
    assert best.getTau() == 5


@pytest.mark.spark
def test_multilabel_predictions_for_the_multilabel_evaluator(spark: Any) -> None:
    from pyspark.ml.evaluation import MultilabelClassificationEvaluator
    from pyspark.sql import functions as F

    x, y = standardized("iris")
    labels = np.stack([y == 0, y == 1, y == 2], axis=1).astype(np.float64)
    model = SparkNetEstimator(**PARAMS, networkArgs={"inputs": 4, "outputs": 3},
                              objective="multilabel").fit(frame(spark, x, labels))
    scored = model.transform(frame(spark, x, labels))
    assert dict(scored.dtypes)["prediction"] == "array<double>"
    rows = scored.select("prediction", "probability").collect()
    for row in rows:  # the indices of the labels whose probability is above one half
        assert row.prediction == [float(i) for i, p in enumerate(row.probability) if p > 0.5]
    # The evaluator compares label sets: the true labels' indices, in the same form.
    truth = F.filter(F.transform("label", lambda v, i: F.when(v > 0.5, i.cast("double"))),
                     lambda i: i.isNotNull())
    f1 = MultilabelClassificationEvaluator(metricName="f1Measure").evaluate(
        scored.withColumn("label", truth))
    perfect = MultilabelClassificationEvaluator(metricName="f1Measure").evaluate(
        scored.withColumn("prediction", truth).withColumn("label", truth))
    assert 0.0 <= f1 <= 1.0 and perfect == 1.0
