"""Class names: taken from StringIndexer's (or an image folder's) nominal attribute or the
``labels`` Param, saved with the model, written by ``transform`` as ``predictedLabel``; a
``sparknet train --images`` run scored through ``SparkNetModel.fromRun``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.errors import ConfigError
from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet_testing.tabular import standardized

pytestmark = pytest.mark.spark

PARAMS = {"network": "sparknet_testing.nets:mlp", "networkArgs": '{"inputs": 4, "outputs": 3}',
          "inputShape": [4], "numWorkers": 2, "tau": 10, "batchSize": 16, "rounds": 3,
          "learningRate": 0.1, "progress": "off"}
SPECIES = np.array(["setosa", "versicolor", "virginica"])


@pytest.fixture(scope="module")
def named_iris(spark: Any) -> Any:
    """Iris with string classes, indexed by StringIndexer (which orders them by frequency,
    then name: not the order the data set numbers them in)."""
    import pandas as pd
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.functions import array_to_vector

    x, y = standardized("iris")
    keep = np.r_[0:50, 50:90, 100:150]  # 50 setosa, 40 versicolor, 50 virginica
    pdf = pd.DataFrame({"features": list(x[keep].astype(np.float64)),
                        "species": SPECIES[y[keep].astype(int)]})
    df = spark.createDataFrame(pdf).withColumn("features", array_to_vector("features"))
    indexer = StringIndexer(inputCol="species", outputCol="label").fit(df)
    return indexer.transform(df).cache(), list(indexer.labels)


def test_labels_come_from_string_indexer_and_name_predictions(named_iris: Any,
                                                              tmp_path: Path) -> None:
    df, indexer_labels = named_iris
    assert indexer_labels[-1] == "versicolor"  # the indexer's order, not the data set's
    model = SparkNetEstimator(**PARAMS).fit(df)
    assert model.getLabels() == indexer_labels  # type: ignore[attr-defined]
    rows = model.transform(df).select("prediction", "predictedLabel", "species").collect()
    assert all(r.predictedLabel == indexer_labels[int(r.prediction)] for r in rows)
    accuracy = np.mean([r.predictedLabel == r.species for r in rows])
    assert accuracy > 0.8, accuracy

    model.save(str(tmp_path / "model"))
    loaded = SparkNetModel.load(str(tmp_path / "model"))
    assert loaded.getLabels() == indexer_labels  # type: ignore[attr-defined]
    again = loaded.transform(df).select("predictedLabel").collect()
    assert [r.predictedLabel for r in again] == [r.predictedLabel for r in rows]


def test_labels_param_overrides_and_is_checked(named_iris: Any) -> None:
    df, _ = named_iris
    names = ["a", "b", "c"]
    model = SparkNetEstimator(labels=names, **PARAMS).fit(df)
    got = model.transform(df).select("prediction", "predictedLabel").collect()
    assert all(r.predictedLabel == names[int(r.prediction)] for r in got)
    without = model.copy({model.predictedLabelCol: ""})  # type: ignore[attr-defined]
    assert "predictedLabel" not in without.transform(df).columns
    with pytest.raises(ConfigError, match="labels names 4 classes but the network predicts "
                                          "one of 3"):
        SparkNetEstimator(labels=["a", "b", "c", "d"], **PARAMS).fit(df)
    with pytest.raises(ConfigError, match="objective 'mse' does not predict one class"):
        SparkNetEstimator(labels=["a"], objective="mse",
                          **{**PARAMS, "networkArgs": '{"inputs": 4, "outputs": 1}'}).fit(df)
    with pytest.raises(ConfigError, match="repeat a name"):
        SparkNetEstimator(labels=["a", "a", "b"], **PARAMS).fit(df)


def test_a_plain_numeric_label_has_no_names(named_iris: Any) -> None:
    from pyspark.sql import functions as F

    df, _ = named_iris
    plain = df.withColumn("label", F.col("label") + F.lit(0.0))  # arithmetic drops metadata
    model = SparkNetEstimator(**PARAMS).fit(plain)
    assert not model.isSet(model.labels)  # type: ignore[attr-defined]
    assert "predictedLabel" not in model.transform(plain).columns


@pytest.mark.slow
def test_an_image_folder_run_names_its_predictions(spark: Any, fashion: Any,
                                                   tmp_path: Path) -> None:
    """``sparknet train --images`` -> ``SparkNetModel.fromRun`` -> ``transform`` of the
    validation folder: predictedLabel is the class folder's name, right for >= 70%."""
    from pyspark.sql import functions as F

    from sparknet.data.images import image_folder_frame
    from sparknet_testing.data import write_image_folder

    write_image_folder(tmp_path / "train", split="train", count=3000)
    write_image_folder(tmp_path / "val", split="test", count=500)
    run = subprocess.run(
        [sys.executable, "-m", "sparknet.cli.main", "train", "--images", str(tmp_path / "train"),
         "--num-workers", "2", "--tau", "25", "--batch-size", "32", "--rounds", "12",
         "--lr", "0.02", "--outer", "nesterov", "--output", str(tmp_path / "run"),
         "--no-progress"], capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    model = SparkNetModel.fromRun(tmp_path / "run", featuresCol="image")
    val, classes = image_folder_frame(spark, tmp_path / "val")
    assert model.getLabels() == classes  # type: ignore[attr-defined]
    folder = F.element_at(F.split("origin", "/"), -2)
    scored = model.transform(val).select((F.col("predictedLabel") == folder).cast("double")
                                         .alias("right"))
    accuracy = scored.agg(F.avg("right")).first()[0]
    assert accuracy >= 0.70, accuracy
