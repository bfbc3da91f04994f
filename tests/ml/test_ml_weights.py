"""weightCol: each batch's loss is the weighted mean of its rows' losses (sum of w * loss over
sum of w, as PyTorch's class-weighted losses take it), checked against a plain PyTorch loop
over the same batches; bad weights are invalid rows under handleInvalid."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparknet.data.shards import pack_row_weights
from sparknet.engine.local_steps import batch_indices
from sparknet.engine.state import initial_state
from sparknet.errors import ConfigError, DataError
from sparknet.flat import flatten_state, load_flat_state
from sparknet.ml import SparkNetEstimator
from sparknet.models.objectives import objective_named
from sparknet.models.registry import resolve_model
from sparknet_testing.tabular import frame, standardized

NET, ARGS = "sparknet_testing.nets:mlp", {"inputs": 4, "outputs": 3}
SEED, TAU, ROUNDS, BATCH, LR = 4, 3, 2, 16, 0.05


def _estimator(**params: Any) -> SparkNetEstimator:
    # K = 1 with averaged momentum and a plain average: the rounds are one SGD loop.
    values: dict[str, Any] = dict(
        network=NET, networkArgs=ARGS, inputShape=[4], numWorkers=1, tau=TAU,
        rounds=ROUNDS, batchSize=BATCH, learningRate=LR, momentum=0.9,
        momentumPolicy="average", outerOptimizer="average", seed=SEED, progress="off")
    values.update(params)
    return SparkNetEstimator(**values)


def _weights(n: int) -> np.ndarray:
    weights = np.random.default_rng(2).uniform(0, 3, n)
    weights[::5] = 0.0
    return weights


def test_weighted_loss_is_the_weighted_mean_of_row_losses() -> None:
    outputs = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    weights = torch.tensor([1.0, 3.0, 0.0])
    rows = F.cross_entropy(outputs, targets, reduction="none")
    expected = (rows * weights).sum() / weights.sum()
    got = objective_named("multiclass").weighted_loss(outputs, targets, weights)
    torch.testing.assert_close(got, expected)
    zero = objective_named("multiclass").weighted_loss(outputs, targets, torch.zeros(3))
    assert float(zero) == 0.0  # a batch of weight 0 moves nothing
    targets2 = torch.tensor([[0.5, 1.0], [1.0, 0.0], [0.0, 0.0]])
    mse = objective_named("mse").weighted_loss(outputs, targets2, weights)
    torch.testing.assert_close(mse, (((outputs - targets2) ** 2).mean(1) * weights).sum() / 4)
    packed = pack_row_weights(np.array([2, 0]), np.array([0.5, 1.5]))
    np.testing.assert_array_equal(packed, np.array([[2, 0.5], [0, 1.5]], np.float32))


@pytest.mark.spark
def test_a_weighted_fit_is_a_weighted_sgd_loop(spark: Any) -> None:
    x, y = standardized("iris")
    w = _weights(len(y))
    df = _with_column(spark, frame(spark, x, y).coalesce(1), "w", w)
    fitted = _estimator(weightCol="w").fit(df)

    kind = resolve_model(NET, args='{"inputs": 4, "outputs": 3}')
    layout, floats, ints = initial_state(kind, SEED)
    module = kind.build()
    load_flat_state(module, layout, floats, ints)
    optimizer = torch.optim.SGD(module.parameters(), lr=LR, momentum=0.9)
    features, labels = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    weight = torch.from_numpy(w.astype(np.float32))
    for batch in batch_indices(num_examples=len(y), batch_size=BATCH, steps=TAU * ROUNDS,
                               step_offset=0, seed=SEED, partition=0):
        rows = torch.from_numpy(batch)
        losses = F.cross_entropy(module(features[rows]), labels[rows], reduction="none")
        optimizer.zero_grad()
        ((losses * weight[rows]).sum() / weight[rows].sum()).backward()
        optimizer.step()
    expected, _ = flatten_state(module, layout)
    np.testing.assert_allclose(fitted.saved_network.floats, expected, rtol=1e-5, atol=1e-6)

    # Equal weights are no weights (up to the order of a float sum).
    equal = _estimator(weightCol="w").fit(_with_column(spark, frame(spark, x, y).coalesce(1),
                                                       "w", np.full(len(y), 2.5)))
    plain = _estimator().fit(frame(spark, x, y).coalesce(1))
    np.testing.assert_allclose(equal.saved_network.floats, plain.saved_network.floats,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.spark
def test_bad_weights_are_invalid_rows(spark: Any) -> None:
    x, y = standardized("iris")
    w = np.ones(len(y))
    w[[3, 40]] = -1.0
    w[7] = np.nan
    df = _with_column(spark, frame(spark, x, y).coalesce(1), "w", w)
    with pytest.raises(DataError) as refused:
        _estimator(weightCol="w").fit(df)
    assert "\n" not in str(refused.value)
    assert "3 rows have a null, NaN, infinite or negative weight in column 'w'" in str(
        refused.value)
    estimator = _estimator(weightCol="w", handleInvalid="skip")
    estimator.fit(df)
    assert estimator.last_summary is not None
    assert estimator.last_summary.skipped == {"bad_weight": 3}
    assert sum(estimator.last_summary.shard_sizes) == len(y) - 3

    with pytest.raises(DataError, match="weight column 'nope' is not in the DataFrame"):
        _estimator(weightCol="nope").fit(df)
    with pytest.raises(DataError, match="weight column 'kind' has type string"):
        _estimator(weightCol="kind").fit(df.withColumn("kind", df["label"].cast("string")))
    with pytest.raises(ConfigError, match="weightCol needs each row's loss"):
        _estimator(weightCol="w", objective="sparknet_testing.nets:mse_loss",
                   networkArgs={"inputs": 4, "outputs": 1}).fit(df)


def _with_column(spark: Any, df: Any, name: str, values: np.ndarray) -> Any:
    """``df`` (one partition, in row order) with ``values`` as a new column, row by row."""
    from pyspark.sql import Row

    rows = [Row(**row.asDict(), **{name: float(v)})
            for row, v in zip(df.collect(), values, strict=True)]
    return spark.createDataFrame(rows).coalesce(1)
