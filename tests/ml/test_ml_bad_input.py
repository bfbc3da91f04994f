"""Each kind of bad input is one clear DataError/ConfigError, raised before any training round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.errors import ConfigError, DataError
from sparknet.ml import SparkNetEstimator

pytestmark = pytest.mark.spark

ROWS = 64


def _rows(fashion: dict) -> list[tuple[list[float], float]]:
    images = fashion["train"].images[:ROWS].reshape(ROWS, -1) / 255
    return [(v.tolist(), float(y)) for v, y in zip(images, fashion["train"].labels[:ROWS],
                                                   strict=True)]


def _fit(df: Any, run_dir: Path, **params: Any) -> None:
    settings = {"inputShape": [1, 28, 28], "numWorkers": 2, "tau": 2, "batchSize": 8,
                "rounds": 1, "runDir": str(run_dir), **params}
    estimator = SparkNetEstimator(**settings)
    try:
        estimator.fit(df)
    finally:
        # Raised before training: no round ran, nothing was logged.
        assert estimator.last_result is None
        assert not (run_dir / "metrics.jsonl").exists()


SCHEMA = "features array<double>, label double"


@pytest.mark.parametrize(("change", "error", "match"), [
    ("missing_column", DataError, r"features column 'pixels' is not in the DataFrame .*"
                                  r"set featuresCol"),
    ("string_features", DataError, r"feature column 'features' has type string.*ML Vector"),
    ("string_labels", DataError, r"label column 'label' has type string.*StringIndexer"),
    ("wrong_length", DataError, r"^1 rows of feature column 'features' do not have 784 values.*"
                                r"has length 100"),
    ("nan", DataError, r"^1 rows of feature column 'features' hold NaN or infinite.*Imputer"),
    ("inf", DataError, r"^2 rows of feature column 'features' hold NaN or infinite"),
    ("null_features", DataError, r"^1 rows have a null in feature column 'features'.*dropna"),
    ("null_labels", DataError, r"^1 rows have a null label in column 'label'.*dropna"),
    ("label_range", DataError, r"^1 labels in column 'label' are not integers in \[0, 10\).*"
                               r"has label 10\.0"),
    ("label_fraction", DataError, r"^1 labels .* has label 2\.5.*StringIndexer"),
    ("empty", DataError, r"the DataFrame is empty"),
    ("too_few_rows", DataError, r"has 10 rows, fewer than numWorkers x batchSize = 2 x 8 = 16"),
    ("input_shape", ConfigError, r"network 'lenet' failed a trial run on the driver with one "
                                 r"example of shape \[1, 20, 20\]"),
])
def test_bad_input(spark: Any, fashion: dict, tmp_path: Path, change: str, error: type,
                   match: str) -> None:
    rows = _rows(fashion)
    params: dict[str, Any] = {}
    schema = SCHEMA
    if change == "missing_column":
        params["featuresCol"] = "pixels"
    elif change == "string_features":
        rows, schema = [("x", y) for _, y in rows], "features string, label double"
    elif change == "string_labels":
        rows, schema = [(v, "shirt") for v, _ in rows], "features array<double>, label string"
    elif change == "wrong_length":
        rows[5] = ([0.0] * 100, 1.0)
    elif change == "nan":
        rows[7][0][3] = float("nan")
    elif change == "inf":
        rows[7][0][3] = float("inf")
        rows[9][0][0] = -float("inf")
    elif change == "null_features":
        rows[3] = (None, 1.0)  # type: ignore[assignment]
    elif change == "null_labels":
        rows[3] = (rows[3][0], None)  # type: ignore[assignment]
    elif change == "label_range":
        rows[4] = (rows[4][0], 10.0)
    elif change == "label_fraction":
        rows[4] = (rows[4][0], 2.5)
    elif change == "empty":
        rows = []
    elif change == "too_few_rows":
        rows = rows[:10]
    elif change == "input_shape":
        params["inputShape"] = [1, 20, 20]
    df = spark.createDataFrame(rows, schema)
    with pytest.raises(error, match=match):
        _fit(df, tmp_path, **params)


def test_sparse_vector_of_the_wrong_size(spark: Any, fashion: dict, tmp_path: Path) -> None:
    from pyspark.ml.linalg import SparseVector, Vectors

    rows = [(Vectors.dense(v), y) for v, y in _rows(fashion)]
    rows[0] = (SparseVector(10, [1], [0.5]), 1.0)
    df = spark.createDataFrame(rows, ["features", "label"])
    with pytest.raises(DataError, match=r"^1 rows .* do not have 784 values.*row 0 has length 10"):
        _fit(df, tmp_path)


def test_error_names_every_problem_found(spark: Any, fashion: dict, tmp_path: Path) -> None:
    rows = _rows(fashion)
    rows[1][0][0] = float("nan")
    rows[2] = (rows[2][0], 11.0)
    df = spark.createDataFrame(rows, SCHEMA)
    with pytest.raises(DataError, match=r"NaN.*\(also: 1 bad_label\)"):
        _fit(df, tmp_path)


def test_good_input_trains(spark: Any, fashion: dict, tmp_path: Path) -> None:
    df = spark.createDataFrame(_rows(fashion), SCHEMA)
    estimator = SparkNetEstimator(inputShape=[1, 28, 28], numWorkers=2, tau=2, batchSize=8,
                                  epochs=0.5, runDir=str(tmp_path))
    model = estimator.fit(df)
    # 0.5 epochs of 64 rows at 2 x 2 x 8 = 32 rows per round: one round.
    assert estimator.last_result is not None and len(estimator.last_result.metrics) == 1
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert np.isfinite(model.saved_network.floats).all()
