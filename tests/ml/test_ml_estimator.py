"""fit / transform / save / load / Pipeline / ONNX against single-process references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from sparknet.data.placement import SparkData
from sparknet.data.placements.memory import broadcast_shards
from sparknet.data.shards import InputSpec
from sparknet.data.sources import dataframe_data
from sparknet.engine.trainer import train
from sparknet.ml import SparkNetEstimator, SparkNetModel

pytestmark = pytest.mark.spark

SHAPE = [1, 28, 28]
SMALL = {"inputShape": SHAPE, "numWorkers": 2, "tau": 5, "batchSize": 32, "rounds": 3,
         "learningRate": 0.05, "outerOptimizer": "average", "momentumPolicy": "reset"}


@pytest.fixture(scope="module")
def fitted(train_vectors: Any) -> tuple[SparkNetEstimator, SparkNetModel]:
    estimator = SparkNetEstimator(**SMALL)
    return estimator, estimator.fit(train_vectors)


def _features(df: Any) -> tuple[np.ndarray, np.ndarray]:
    rows = df.select("features", "label").collect()
    return (np.stack([r.features.toArray() for r in rows]).astype(np.float32),
            np.array([r.label for r in rows]))


def test_fit_equals_the_engine_on_the_same_shards(spark: Any, train_vectors: Any,
                                                  fitted: tuple) -> None:
    estimator, model = fitted
    spec = InputSpec(shape=tuple(SHAPE), num_classes=10, scale=1.0)
    data, _ = dataframe_data(train_vectors, features="features", label="label", spec=spec,
                             num_workers=2, batch_size=32)
    assert data.train.cached is not None
    shards = data.train.cached.collect()
    data.release()
    # The shards hold exactly the DataFrame's rows, each once.
    features, labels = _features(train_vectors)
    got = np.concatenate([s.features.reshape(len(s), -1) for s in shards])
    got_labels = np.concatenate([s.labels for s in shards])
    order, ref_order = np.lexsort(got.T[::-1]), np.lexsort(features.T[::-1])
    np.testing.assert_array_equal(got[order], features[ref_order])
    np.testing.assert_array_equal(got_labels[order], labels[ref_order])
    # Training the same shards, broadcast from the driver, gives the same weights.
    reference = SparkData(train=broadcast_shards(spark.sparkContext, shards), test=None,
                          spec=spec, train_sizes=tuple(len(s) for s in shards), test_size=0)
    try:
        result = train(reference, config=estimator.train_config(), progress=False)
    finally:
        reference.release()
    np.testing.assert_array_equal(model.saved_network.floats, result.floats)


def test_transform_matches_a_local_forward_pass(test_vectors: Any, fitted: tuple) -> None:
    _, model = fitted
    scored = model.transform(test_vectors).select("features", "label", "prediction",
                                                  "probability").collect()
    features = np.stack([r.features.toArray() for r in scored]).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(model.network_module()(
            torch.from_numpy(features).reshape(-1, *SHAPE)), dim=1).numpy()
    probs = np.stack([r.probability.toArray() for r in scored])
    predictions = np.array([r.prediction for r in scored])
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_array_equal(predictions, expected.argmax(1))
    accuracy = float(np.mean(predictions == np.array([r.label for r in scored])))
    assert accuracy > 0.6, f"3 rounds on 2,000 rows should reach 60% ({accuracy:.3f})"


def test_scoring_batch_size_does_not_change_results(test_vectors: Any, fitted: tuple) -> None:
    _, model = fitted
    small = model.copy({model.scoringBatchSize: 7})
    a = [r.probability for r in model.transform(test_vectors.limit(100)).collect()]
    b = [r.probability for r in small.transform(test_vectors.limit(100)).collect()]
    np.testing.assert_allclose(np.stack(a), np.stack(b), atol=1e-6)


def test_null_rows_score_as_null_when_kept(spark: Any, fitted: tuple) -> None:
    _, model = fitted
    df = spark.createDataFrame([([0.5] * 784,), (None,)], "features array<double>")
    with pytest.raises(Exception, match="sparknet DataError: a row of feature column"):
        model.transform(df).collect()  # handleInvalid='error', the default
    rows = model.copy({model.handleInvalid: "keep"}).transform(df).collect()
    assert rows[0].prediction is not None and len(rows[0].probability) == 10
    assert rows[1].prediction is None and rows[1].probability is None


def test_model_and_estimator_save_and_load(tmp_path: Path, test_vectors: Any,
                                           fitted: tuple) -> None:
    estimator, model = fitted
    model.write().overwrite().save(str(tmp_path / "model"))
    estimator.write().save(str(tmp_path / "estimator"))
    loaded = SparkNetModel.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.saved_network.floats, model.saved_network.floats)
    assert loaded.uid == model.uid and loaded.getInputShape() == tuple(SHAPE)
    before = [r.prediction for r in model.transform(test_vectors).collect()]
    after = [r.prediction for r in loaded.transform(test_vectors).collect()]
    assert before == after
    again = SparkNetEstimator.load(str(tmp_path / "estimator"))
    assert again.train_config() == estimator.train_config()
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


def test_pipeline_with_string_indexer_round_trips(spark: Any, tmp_path: Path,
                                                  train_vectors: Any,
                                                  test_vectors: Any) -> None:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F

    from sparknet.data.fashion_mnist import CLASSES

    names = F.element_at(F.array(*[F.lit(c) for c in CLASSES]), F.col("label").cast("int") + 1)
    train_df = train_vectors.withColumn("kind", names).drop("label")
    test_df = test_vectors.withColumn("kind", names).drop("label")
    pipeline = Pipeline(stages=[
        StringIndexer(inputCol="kind", outputCol="label"),
        SparkNetEstimator(**{**SMALL, "rounds": 2}),
    ])
    fitted = pipeline.fit(train_df)
    fitted.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    before = fitted.transform(test_df).select("kind", "label", "prediction").collect()
    after = loaded.transform(test_df).select("kind", "label", "prediction").collect()
    assert before == after
    assert isinstance(loaded.stages[1], SparkNetModel)
    # Predictions are indices of StringIndexer's labels, and beat chance on held-out data.
    assert np.mean([r.label == r.prediction for r in after]) > 0.3


def test_onnx_export_matches_transform_on_1000_test_images(tmp_path: Path, test_vectors: Any,
                                                           fitted: tuple) -> None:
    _, model = fitted
    path = model.export_onnx(tmp_path / "model.onnx")
    scored = model.transform(test_vectors).collect()
    assert len(scored) == 1000
    features = np.stack([r.features.toArray() for r in scored]).astype(np.float32)
    probability, _ = ort.InferenceSession(str(path)).run(
        None, {"features": features.reshape(-1, *SHAPE)})
    spark_probs = np.stack([r.probability.toArray() for r in scored])
    assert np.abs(probability - spark_probs).max() <= 1e-4
    np.testing.assert_array_equal(probability.argmax(1), [r.prediction for r in scored])
