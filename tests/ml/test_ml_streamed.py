"""``SparkNetEstimator(streamed=True)``: streamed shards through the pipeline stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.ml import SparkNetEstimator

pytestmark = pytest.mark.spark

SMALL = {"inputShape": [1, 28, 28], "numWorkers": 2, "tau": 5, "batchSize": 32, "rounds": 3,
         "learningRate": 0.05, "outerOptimizer": "average", "momentumPolicy": "reset"}


def test_streamed_fit_gives_the_in_memory_weights(train_vectors: Any) -> None:
    models = [SparkNetEstimator(**SMALL, streamed=streamed).fit(train_vectors)
              for streamed in (False, True)]
    assert np.array_equal(models[0].saved_network.floats, models[1].saved_network.floats)


@pytest.mark.slow
def test_estimator_trains_on_a_jpeg_folder(spark: Any, fashion: Any, tmp_path: Path) -> None:
    """fit on 6,000 JPEG files read with binaryFile reaches 75% accuracy on 1,000 others."""
    from pyspark.sql import functions as F

    from sparknet.data.images import image_folder_frame
    from sparknet_testing.data import write_image_folder

    write_image_folder(tmp_path / "train", split="train", count=6000)
    write_image_folder(tmp_path / "val", split="test", count=1000)
    train, classes = image_folder_frame(spark, tmp_path / "train")
    val, _ = image_folder_frame(spark, tmp_path / "val", classes=classes)
    estimator = SparkNetEstimator(featuresCol="image", inputShape=[1, 28, 28], numWorkers=2,
                                  tau=25, batchSize=32, rounds=24, learningRate=0.02,
                                  outerOptimizer="nesterov", streamed=True)
    model = estimator.fit(train)
    scored = model.transform(val)
    accuracy = scored.select(F.avg((F.col("prediction") == F.col("label")).cast("double"))
                             ).first()[0]
    assert accuracy >= 0.75, accuracy
