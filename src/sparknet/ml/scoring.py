"""Batch scoring on the executors: Arrow batches in, class probabilities out.

The network crosses to executors as a reference string and the weights as one broadcast of
the flat buffers; each Python worker builds the network once per set of weights and keeps it.
Rows that cannot be scored (null, NaN/inf, undecodable image) get null outputs; rows of the
wrong size are an error.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from sparknet.data.dataframe import FeatureLayout, Report, decode_features
from sparknet.errors import DataError
from sparknet.flat import FlatLayout, load_flat_state
from sparknet.models.registry import ModelSource

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import Column

_CACHE_SIZE = 2
_SCORERS: OrderedDict[str, nn.Module] = OrderedDict()


@dataclass(frozen=True, kw_only=True)
class ScoringPlan:
    """Plain data the scoring tasks need; crosses to executors with the UDF."""

    network: str
    weights_token: str
    layout: FeatureLayout
    scale: float
    batch_size: int
    threads: int
    device: str


def cached_scorer(plan: ScoringPlan, floats: np.ndarray, ints: np.ndarray) -> nn.Module:
    """The network with these weights in eval mode, built once per Python worker."""
    key = f"{plan.network}|{plan.weights_token}|{plan.device}"
    if key in _SCORERS:
        _SCORERS.move_to_end(key)
        return _SCORERS[key]
    module = ModelSource(key=plan.network).build()
    load_flat_state(module, FlatLayout.of(module), floats, ints)
    module.to(_device(plan.device)).eval()
    _SCORERS[key] = module
    while len(_SCORERS) > _CACHE_SIZE:
        _SCORERS.popitem(last=False)
    return module


def _device(preference: str) -> torch.device:
    from sparknet.engine.spark_rounds import task_device

    return task_device(preference)


@torch.inference_mode()
def probabilities(module: nn.Module, features: np.ndarray, *, scale: float,
                  batch_size: int) -> np.ndarray:
    """Softmax of the network's outputs for ``features`` [n, *shape], ``batch_size`` at a time."""
    device = next(module.parameters()).device
    out = np.empty((features.shape[0], 0), np.float32)
    parts = []
    for start in range(0, features.shape[0], batch_size):
        # A float32 copy: Arrow-backed arrays are read-only, torch wants writable memory.
        chunk = np.array(features[start: start + batch_size], dtype=np.float32)
        x = torch.from_numpy(chunk).to(device)
        if scale != 1.0:
            x = x * scale
        parts.append(torch.softmax(module(x), dim=1).cpu().numpy())
    return np.concatenate(parts) if parts else out


def score_array(plan: ScoringPlan, module: nn.Module, column: pa.Array) -> pa.Array:
    """One Arrow batch of features -> list<double> probabilities (null where unusable)."""
    report = Report()
    features, valid = decode_features(column, plan.layout, report)
    for kind in ("wrong_length", "wrong_image"):
        if kind in report.counts:
            raise DataError(f"cannot score {report.counts[kind]} rows whose features do not "
                            f"fit inputShape {list(plan.layout.shape)} (e.g. "
                            f"{report.examples[kind]}): score data shaped like the training "
                            "data")
    probs = probabilities(module, features, scale=plan.scale, batch_size=plan.batch_size)
    width = probs.shape[1] if probs.ndim == 2 else 0
    full = np.zeros((len(column), width), np.float64)
    full[valid] = probs
    offsets = np.arange(len(column) + 1, dtype=np.int32) * np.int32(width)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(full.reshape(-1)),
                                    mask=None if valid.all() else pa.array(~valid))


def probability_column(feature: Column, plan: ScoringPlan,
                       weights: Broadcast[tuple[np.ndarray, np.ndarray]]) -> Column:
    """An Arrow UDF over ``feature`` (already in Arrow form) giving array<double> probabilities."""
    from pyspark.sql.functions import arrow_udf  # type: ignore[attr-defined]  # pyspark>=4.1

    def score(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        torch.set_num_threads(plan.threads)
        floats, ints = weights.value
        module = cached_scorer(plan, floats, ints)
        for batch in batches:
            yield score_array(plan, module, batch)

    udf = arrow_udf(score, "array<double>")
    return udf(feature)
