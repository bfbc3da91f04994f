"""Saving and loading go through Spark's Hadoop FileSystem on a classic session, so any URI
the session can write works: a ``file://`` URI through that API, and a plain local path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet_testing.tabular import frame, standardized

pytestmark = pytest.mark.spark


def test_file_uri_and_local_path_round_trip(spark: Any, tmp_path: Path) -> None:
    from pyspark.ml import Pipeline, PipelineModel

    x, y = standardized("iris")
    df = frame(spark, x, y)
    estimator = SparkNetEstimator(network="sparknet_testing.nets:mlp",
                                  networkArgs={"inputs": 4, "outputs": 3}, inputShape=[4],
                                  numWorkers=2, tau=5, batchSize=16, rounds=1, progress="off")
    model = estimator.fit(df)
    uri = (tmp_path / "by-uri").as_uri()  # file:///...
    for target in (uri, str(tmp_path / "by-path")):
        model.write().overwrite().save(target)
        model.write().overwrite().save(target)  # overwrite goes through the same API
        loaded = SparkNetModel.load(target)
        np.testing.assert_array_equal(loaded.saved_network.floats, model.saved_network.floats)
        assert loaded.hasSummary and loaded.summary.rounds == model.summary.rounds
    folder = tmp_path / "by-uri"
    assert (folder / "weights" / "model.safetensors").is_file()
    assert not list((folder / "weights").glob("*.crc"))  # plain files, editable and portable
    Pipeline(stages=[estimator]).fit(df).write().save(f"{uri}-pipeline")
    again = PipelineModel.load(f"{uri}-pipeline").stages[0]
    assert again.predict(x[0]) == model.predict(x[0])
