"""scikit-learn's bundled tabular data sets as small DataFrames, and a single-process
PyTorch reference that sees the same samples as a SparkNet fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sparknet.engine.state import initial_state
from sparknet.flat import load_flat_state
from sparknet.models.registry import resolve_model


def standardized(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 features scaled to zero mean and unit variance, float64 targets)."""
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes, "iris": datasets.load_iris}[name]
    x, y = loader(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), y.astype(np.float64)


def split(n: int, *, seed: int = 0, validation: float = 0.5) -> np.ndarray:
    """A fixed boolean mask of validation rows."""
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[: int(n * validation)]] = True
    return mask


def frame(spark: Any, x: np.ndarray, y: np.ndarray, *, is_validation: np.ndarray | None = None
          ) -> Any:
    """DataFrame(features ML Vector, label double or array<double>[, is_validation])."""
    import pandas as pd
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    data: dict[str, Any] = {"features": list(x.astype(np.float64))}
    data["label"] = list(y) if y.ndim == 2 else y
    if is_validation is not None:
        data["is_validation"] = is_validation
    df = spark.createDataFrame(pd.DataFrame(data))
    return df.withColumn("features", array_to_vector(F.col("features")))


def reference_fit(network: str, args: str | None, x: np.ndarray, targets: torch.Tensor,
                  loss_fn: Any, *, seed: int, lr: float, momentum: float, batch_size: int,
                  samples: int) -> torch.nn.Module:
    """A plain PyTorch loop from the same initial weights, over ``samples`` row visits in
    shuffled epochs of the same rows, with the same batch size and optimizer."""
    kind = resolve_model(network, args=args)
    layout, floats, ints = initial_state(kind, seed)
    module = kind.build()
    load_flat_state(module, layout, floats, ints)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(samples // len(x) + 1)])
    features = torch.from_numpy(x)
    module.train()
    for start in range(0, samples - batch_size + 1, batch_size):
        batch = torch.from_numpy(order[start: start + batch_size])
        optimizer.zero_grad()
        loss_fn(module(features[batch]), targets[batch]).backward()
        optimizer.step()
    return module.eval()
