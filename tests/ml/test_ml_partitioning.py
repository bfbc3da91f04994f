"""The same rows in the same order with the same seed give the same model whatever the input's
partitioning: rows are dealt to shards by their input row number (row g to shard g mod
numWorkers, numbered over the partitions in order), never by partition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sparknet.ml import SparkNetEstimator
from sparknet_testing.tabular import standardized

pytestmark = pytest.mark.spark


def test_the_model_does_not_depend_on_the_partitioning(spark: Any) -> None:
    from pyspark.ml.linalg import Vectors

    x, y = standardized("iris")
    rows = [(Vectors.dense(v.astype(float)), float(t)) for v, t in zip(x, y, strict=True)]
    estimator = SparkNetEstimator(network="sparknet_testing.nets:mlp",
                                  networkArgs={"inputs": 4, "outputs": 3}, inputShape=[4],
                                  numWorkers=2, tau=5, batchSize=16, rounds=2, progress="off")
    weights = {}
    for partitions in (1, 2, 3):
        rdd = spark.sparkContext.parallelize(rows, partitions)
        df = spark.createDataFrame(rdd, ["features", "label"])
        assert df.rdd.getNumPartitions() == partitions
        weights[partitions] = estimator.fit(df).saved_network.floats
    np.testing.assert_array_equal(weights[1], weights[2])
    np.testing.assert_array_equal(weights[1], weights[3])
