"""Every objective through fit and transform, checked with Spark's own evaluators.

Small fits (a few rounds) on scikit-learn's bundled data; the columns transform writes are
compared with the driver's scoring of the same rows and with their definitions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.errors import ConfigError, DataError
from sparknet.ml import SparkNetEstimator
from sparknet_testing.tabular import frame, split, standardized

pytestmark = pytest.mark.spark

NET = "sparknet_testing.nets:mlp"
FAST = {"network": NET, "numWorkers": 2, "tau": 20, "batchSize": 16, "rounds": 3,
        "progress": "off", "learningRate": 0.05}


def _estimator(inputs: int, outputs: int, **params: Any) -> SparkNetEstimator:
    args = f'{{"inputs": {inputs}, "outputs": {outputs}}}'
    return SparkNetEstimator(**{**FAST, "networkArgs": args, "inputShape": [inputs], **params})


def _arrays(df: Any, *columns: str) -> list[np.ndarray]:
    rows = df.select(*columns).collect()
    return [np.array([_plain(r[c]) for r in rows], dtype=np.float64) for c in columns]


def _plain(value: Any) -> Any:
    return value.toArray() if hasattr(value, "toArray") else value


def _onnx_and_transform(model: Any, scored: Any, column: str, tmp_path: Path
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ONNX probability, ONNX logits, transform's ``column``) for the same rows."""
    import onnxruntime as ort

    features, written = _arrays(scored, "features", column)
    session = ort.InferenceSession(str(model.export_onnx(tmp_path / "model.onnx")))
    probability, logits = session.run(None, {"features": features.astype(np.float32)})
    return probability, logits, written


@pytest.fixture(scope="module")
def cancer(spark: Any) -> Any:
    x, y = standardized("breast_cancer")
    return frame(spark, x, y, is_validation=split(len(y))).cache()


@pytest.fixture(scope="module")
def diabetes(spark: Any) -> Any:
    x, y = standardized("diabetes")
    return frame(spark, x, (y - y.mean()) / y.std(), is_validation=split(len(y))).cache()


def test_multiclass_writes_the_columns_spark_classifiers_write(spark: Any) -> None:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    x, y = standardized("iris")
    df = frame(spark, x, y)
    model = _estimator(4, 3, learningRate=0.1).fit(df)
    scored = model.transform(df)
    raw, probability, prediction = _arrays(scored, "rawPrediction", "probability", "prediction")
    expected = np.exp(raw - raw.max(1, keepdims=True))
    np.testing.assert_allclose(probability, expected / expected.sum(1, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(prediction, probability.argmax(1))
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(scored)
    log_loss = MulticlassClassificationEvaluator(metricName="logLoss").evaluate(scored)
    assert accuracy > 0.8 and log_loss < 0.6
    assert model.summary.objectiveHistory[-1] < model.summary.objectiveHistory[0]


def test_binary_sigmoid_columns_and_the_binary_evaluator(cancer: Any, tmp_path: Path) -> None:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    model = _estimator(30, 1, objective="binary").fit(cancer.filter("not is_validation"))
    scored = model.transform(cancer.filter("is_validation"))
    raw, probability, prediction = _arrays(scored, "rawPrediction", "probability", "prediction")
    assert raw.shape[1] == 2 and probability.shape[1] == 2  # as Spark's binary classifiers
    np.testing.assert_allclose(raw[:, 0], -raw[:, 1])
    np.testing.assert_allclose(probability[:, 1], 1 / (1 + np.exp(-raw[:, 1])), rtol=1e-6,
                               atol=1e-12)
    np.testing.assert_array_equal(prediction, (probability[:, 1] > 0.5).astype(float))
    auc = BinaryClassificationEvaluator().evaluate(scored)  # reads rawPrediction
    assert auc > 0.97
    # ONNX serves the sigmoid of the one logit: transform's probability of class 1.
    onnx_p, _, probability = _onnx_and_transform(model, scored, "probability", tmp_path)
    np.testing.assert_allclose(onnx_p[:, 0], probability[:, 1], rtol=1e-5, atol=1e-6)


def test_multilabel_predicts_a_vector_of_labels(spark: Any, tmp_path: Path) -> None:
    x, y = standardized("breast_cancer")
    # Three labels per row: the diagnosis, its opposite, and whether feature 0 is above average.
    labels = np.stack([y, 1 - y, (x[:, 0] > 0).astype(float)], axis=1)
    df = frame(spark, x, labels)
    model = _estimator(30, 3, objective="multilabel").fit(df)
    sets, truth = [r.prediction for r in model.transform(df).select("prediction").collect()], \
        _arrays(df, "label")[0]
    prediction = np.array([[float(i in s) for i in range(3)] for s in sets])  # label indices
    assert prediction.shape == truth.shape == (len(y), 3)
    assert (prediction == truth).mean(axis=0).min() > 0.85
    onnx_p, _, probability = _onnx_and_transform(model, model.transform(df), "probability",
                                                 tmp_path)
    np.testing.assert_allclose(onnx_p, probability, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("objective", ["mse", "l1", "huber"])
def test_regression_with_the_regression_evaluator(diabetes: Any, objective: str,
                                                   tmp_path: Path) -> None:
    from pyspark.ml.evaluation import RegressionEvaluator

    model = _estimator(10, 1, objective=objective, learningRate=0.01).fit(
        diabetes.filter("not is_validation"))
    scored = model.transform(diabetes.filter("is_validation"))
    assert dict(scored.dtypes)["prediction"] == "double"
    assert "probability" not in scored.columns and "rawPrediction" not in scored.columns
    r2 = RegressionEvaluator(metricName="r2").evaluate(scored)
    assert r2 > 0.3, r2
    assert model.summary.rounds[-1]["train_accuracy"] is None
    onnx_p, onnx_logits, prediction = _onnx_and_transform(model, scored, "prediction",
                                                          tmp_path)
    assert onnx_p.shape == (len(prediction), 1)
    np.testing.assert_allclose(onnx_p[:, 0], prediction, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(onnx_logits, onnx_p)


def test_vector_targets_give_a_vector_prediction(spark: Any) -> None:
    x, y = standardized("diabetes")
    y = (y - y.mean()) / y.std()
    targets = np.stack([y, -2 * y], axis=1)
    df = frame(spark, x, targets)
    model = _estimator(10, 2, objective="mse", learningRate=0.01).fit(df)
    prediction, truth = _arrays(model.transform(df), "prediction", "label")
    assert prediction.shape == (len(y), 2)
    assert ((prediction - truth) ** 2).mean(axis=0).max() < 0.7 * truth.var(axis=0).max()


def test_a_user_loss_factory_trains_like_the_same_builtin_loss(diabetes: Any) -> None:
    builtin = _estimator(10, 1, objective="mse", rounds=2).fit(diabetes)
    user = _estimator(10, 1, objective="sparknet_testing.nets:mse_loss", rounds=2).fit(diabetes)
    np.testing.assert_array_equal(user.saved_network.floats, builtin.saved_network.floats)
    assert user.summary.objectiveHistory == builtin.summary.objectiveHistory


@pytest.mark.parametrize(("objective", "outputs", "label", "error", "match"), [
    ("binary", 1, "array", DataError, r"objective 'binary' needs one number per row"),
    ("multilabel", 3, "number", DataError, r"objective 'multilabel' needs a vector of 0/1"),
    ("multiclass", 3, "string", DataError, r"label column 'label' has type string.*"
                                           r"StringIndexer"),
    ("binary", 2, "number", ConfigError, r"has 2 outputs but objective 'binary' needs one "
                                         r"logit"),
    ("multiclass", 1, "number", ConfigError, r"has 1 output for objective 'multiclass'"),
    ("mse", 2, "number", ConfigError, r"holds one number per row but the network has 2 "
                                      r"outputs"),
    ("nonsense", 1, "number", ConfigError, r"objective='nonsense' is invalid"),
    ("no_such_module:loss", 1, "number", ConfigError, r"cannot import module 'no_such_module' "
                                                      r"of loss factory"),
])
def test_labels_are_checked_per_objective_before_any_job(
        spark: Any, objective: str, outputs: int, label: str, error: type, match: str) -> None:
    rows = [([float(i % 3), 1.0], [0.0, 1.0, 0.0] if label == "array" else
             ("a" if label == "string" else float(i % 2))) for i in range(64)]
    label_type = {"array": "array<double>", "string": "string", "number": "double"}[label]
    df = spark.createDataFrame(rows, f"features array<double>, label {label_type}")
    tracker = spark.sparkContext.statusTracker()
    jobs_before = len(tracker.getJobIdsForGroup())
    with pytest.raises(error, match=match):
        _estimator(2, outputs, objective=objective).fit(df)
    assert len(tracker.getJobIdsForGroup()) == jobs_before


@pytest.mark.parametrize(("objective", "outputs", "labels", "match"), [
    ("binary", 1, [0.0, 1.0, 2.0], r"^1 labels in column 'label' are not 0 or 1 .*has label "
                                   r"\[2\.0\]"),
    ("multiclass", 3, [0.0, 1.5, 2.0], r"^1 labels .* not integers in \[0, 3\)"),
    ("mse", 2, [[0.0, 1.0], [1.0], [2.0, 0.0]], r"^1 rows of label column 'label' do not have "
                                               r"2 values"),
    ("mse", 1, [0.0, float("nan"), 1.0], r"^1 targets in column 'label' are NaN or infinite"),
])
def test_label_values_are_checked_per_objective_before_training(
        spark: Any, objective: str, outputs: int, labels: list[Any], match: str) -> None:
    rows = [([float(i), 1.0], labels[i % len(labels)] if i < len(labels) else labels[0])
            for i in range(64)]
    label_type = "array<double>" if isinstance(labels[0], list) else "double"
    df = spark.createDataFrame(rows, f"features array<double>, label {label_type}")
    estimator = _estimator(2, outputs, objective=objective)
    with pytest.raises(DataError, match=match):
        estimator.fit(df)
    assert estimator.last_result is None  # no round ran


def test_shard_sizes_differ_by_at_most_one_row(spark: Any) -> None:
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import dataframe_data

    x, y = standardized("breast_cancer")
    rows = 1437  # the case: K = 2 over 1,437 rows gave (540, 897)
    for partitions in (1, 2, 3):
        df = frame(spark, np.tile(x, (3, 1))[:rows], np.tile(y, 3)[:rows]).repartition(
            partitions)
        data, summary = dataframe_data(df, features="features", label="label",
                                       spec=InputSpec(shape=(30,), num_classes=2),
                                       num_workers=2, batch_size=8)
        data.release()
        assert sorted(summary.shard_sizes) == [rows // 2, rows - rows // 2], partitions
