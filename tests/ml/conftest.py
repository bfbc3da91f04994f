"""Small Fashion-MNIST DataFrames for the pipeline-stage tests (a few thousand rows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

TRAIN_ROWS = 2000
TEST_ROWS = 1000


def pixels_frame(spark: Any, images: np.ndarray, labels: np.ndarray, *,
                 dtype: type = np.float32) -> Any:
    """DataFrame(features array<float|double> scaled to [0, 1], label double), via Arrow."""
    import pandas as pd

    flat = images.reshape(len(images), -1).astype(dtype) / dtype(255)
    frame = pd.DataFrame({"features": list(flat), "label": labels.astype(np.float64)})
    return spark.createDataFrame(frame)


@pytest.fixture(scope="module")
def train_vectors(spark: Any, fashion: dict) -> Any:
    """2,000 training rows: ML dense vectors + label (cached)."""
    from pyspark.ml.functions import array_to_vector

    split = fashion["train"]
    df = pixels_frame(spark, split.images[:TRAIN_ROWS], split.labels[:TRAIN_ROWS])
    return df.withColumn("features", array_to_vector("features")).cache()


@pytest.fixture(scope="module")
def test_vectors(spark: Any, fashion: dict) -> Any:
    from pyspark.ml.functions import array_to_vector

    split = fashion["test"]
    df = pixels_frame(spark, split.images[:TEST_ROWS], split.labels[:TEST_ROWS])
    return df.withColumn("features", array_to_vector("features")).cache()
