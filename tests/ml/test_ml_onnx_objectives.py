"""ONNX export for every objective, fitted on Spark and checked against ``transform`` with
onnxruntime: one-output binary and regression, multilabel, vector regression and a user's loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from sparknet.ml import SparkNetEstimator
from sparknet_testing.tabular import frame, standardized

pytestmark = pytest.mark.spark

CASES = [  # objective, outputs, targets from the Iris class
    ("binary", 1, lambda y: (y == 0).astype(np.float64)),
    ("multilabel", 3, lambda y: np.stack([y == 0, y == 1, y > 0], 1).astype(np.float64)),
    ("mse", 1, lambda y: y),
    ("huber", 2, lambda y: np.stack([y, -y], 1)),
    ("sparknet_testing.nets:mse_loss", 1, lambda y: y),
    ("multiclass", 3, lambda y: y),
]


@pytest.mark.parametrize(("objective", "outputs", "targets"), [
    pytest.param(*case, marks=() if case[0] in ("binary", "multilabel") else pytest.mark.slow)
    for case in CASES])
def test_onnx_scores_like_transform(spark: Any, tmp_path: Path, objective: str, outputs: int,
                                    targets: Any) -> None:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    x, y = standardized("iris")
    df = frame(spark, x, targets(y)).withColumn("id", F.monotonically_increasing_id())
    model = SparkNetEstimator(network="sparknet_testing.nets:mlp",
                              networkArgs={"inputs": 4, "outputs": outputs}, inputShape=[4],
                              objective=objective, numWorkers=2, tau=5, batchSize=16, rounds=2,
                              progress="off").fit(df)
    path = model.export_onnx(tmp_path / "model.onnx")
    probability, logits = ort.InferenceSession(str(path)).run(None, {"features": x})
    assert probability.shape == logits.shape == (len(x), outputs)
    scored = model.transform(df).orderBy("id")
    if "probability" in scored.columns:  # classifiers: the graph's head is transform's
        column = vector_to_array("probability")
        expected = np.array([r[0] for r in scored.select(column).collect()])
        if objective == "binary":  # Spark's binary layout [1 - p, p]
            expected = expected[:, 1:]
    else:  # regression: the output itself
        rows = scored.select("prediction").collect()
        expected = np.array([np.atleast_1d(r[0].toArray() if hasattr(r[0], "toArray") else r[0])
                             for r in rows])
    np.testing.assert_allclose(probability, expected, rtol=1e-5, atol=1e-6)
