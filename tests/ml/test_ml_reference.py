"""Must-show accuracy: a SparkNet fit against a single-process PyTorch loop that sees the same
samples (same rows, initial weights, optimizer, batch size and number of row visits), on
scikit-learn's bundled breast-cancer (binary) and diabetes (regression) data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparknet.ml import SparkNetEstimator
from sparknet_testing.tabular import frame, reference_fit, split, standardized

pytestmark = pytest.mark.spark

NET = "sparknet_testing.nets:mlp"
K, TAU, BATCH, ROUNDS = 2, 40, 16, 5  # 6,400 row visits, about 22 epochs of the rows
SEEDS = (0, 1, 2)


def _fit_held_out(spark: Any, x: np.ndarray, y: np.ndarray, **params: Any
                  ) -> tuple[Any, Any, np.ndarray]:
    """(model trained on half the rows, its scores of the other half, the held-out mask)."""
    held_out = split(len(y))
    df = frame(spark, x, y, is_validation=held_out)
    estimator = SparkNetEstimator(network=NET, numWorkers=K, tau=TAU, batchSize=BATCH,
                                  rounds=ROUNDS, validationIndicatorCol="is_validation",
                                  evalEvery=ROUNDS, progress="off", **params)
    model = estimator.fit(df)
    return model, model.transform(df.filter("is_validation")), held_out


def _reference_outputs(args: str, x: np.ndarray, y: np.ndarray, held_out: np.ndarray,
                       loss: Any, lr: float, *, seed: int = 0) -> np.ndarray:
    """The reference's outputs on the held-out rows after it trained on the others."""
    targets = torch.from_numpy(y[~held_out]).float()[:, None]
    reference = reference_fit(NET, args, x[~held_out], targets, loss, seed=seed, lr=lr,
                              momentum=0.9, batch_size=BATCH, samples=K * TAU * BATCH * ROUNDS)
    with torch.no_grad():
        outputs: np.ndarray = reference(torch.from_numpy(x[held_out]))[:, 0].numpy()
    return outputs


@pytest.mark.slow  # three fits: about 100 s on the 2-core VM
def test_breast_cancer_accuracy_within_one_point_of_the_reference(spark: Any) -> None:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    # One held-out row is 0.35 points: the mean over three seeds (initial weights and data
    # order, the same for both) keeps the comparison from resting on one or two rows.
    x, y = standardized("breast_cancer")
    args, lr = '{"inputs": 30, "outputs": 1}', 0.05
    ours, theirs = [], []
    for seed in SEEDS:
        model, scored, held_out = _fit_held_out(spark, x, y, networkArgs=args, seed=seed,
                                                objective="binary", inputShape=[30],
                                                learningRate=lr)
        ours.append(MulticlassClassificationEvaluator(metricName="accuracy").evaluate(scored))
        predicted = _reference_outputs(args, x, y, held_out, F.binary_cross_entropy_with_logits,
                                       lr, seed=seed) > 0
        theirs.append(float((predicted == (y[held_out] > 0.5)).mean()))
        # The summary's last validation accuracy is the same number, computed by the engine.
        assert model.summary.validationMetrics[-1]["accuracy"] == pytest.approx(ours[-1])
    print(f"breast cancer: sparknet {[round(100 * a, 2) for a in ours]}, reference "
          f"{[round(100 * a, 2) for a in theirs]}")
    assert np.mean(theirs) > 0.94
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.01


def test_diabetes_mse_within_five_percent_of_the_reference(spark: Any) -> None:
    from pyspark.ml.evaluation import RegressionEvaluator

    x, y = standardized("diabetes")
    y = (y - y.mean()) / y.std()
    args, lr = '{"inputs": 10, "hidden": 4, "outputs": 1}', 0.005
    model, scored, held_out = _fit_held_out(spark, x, y, networkArgs=args, objective="mse",
                                            inputShape=[10], learningRate=lr)
    mse = RegressionEvaluator(metricName="mse").evaluate(scored)

    predicted = _reference_outputs(args, x, y, held_out, F.mse_loss, lr)
    reference_mse = float(np.mean((predicted - y[held_out]) ** 2))
    print(f"diabetes: sparknet MSE {mse:.4f}, reference {reference_mse:.4f}")
    assert reference_mse < 0.6  # it learned something (the target has variance 1)
    assert abs(mse - reference_mse) <= 0.05 * reference_mse
    assert model.summary.validationMetrics[-1]["loss"] == pytest.approx(mse, rel=1e-4)
