"""Batch scoring on the executors: Arrow batches in, the objective's score columns out.

The network crosses to executors as its model kind and the weights as one broadcast of the
flat buffers; each Python worker takes the network from the shared cache of built networks
(``sparknet.engine.model_cache``) and loads these weights into it when it holds others. The
model kind's input preparation turns features into network input, as in training.
Rows that cannot be scored (null, NaN/inf, the wrong size, undecodable image) get null
scores here; ``handleInvalid`` decides in the JVM what that means (``invalid_rows``): one
line (error), null outputs (keep) or the row left out (skip), so no Python worker traceback
reaches the user.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import torch
from torch import nn

from sparknet.data.columns import FeatureLayout, Report, decode_features
from sparknet.engine.model_cache import cached_network
from sparknet.engine.tasks import task_device
from sparknet.engine.transport import Shared
from sparknet.errors import DataError
from sparknet.flat import load_flat_state
from sparknet.models.kinds import InputPrep, ModelKind, reset_carried_state
from sparknet.models.objectives import MULTICLASS, Objective

if TYPE_CHECKING:
    from pyspark.sql import Column

@dataclass(frozen=True, kw_only=True)
class ScoringPlan:
    """Plain data the scoring tasks need; crosses to executors with the UDF."""

    model: ModelKind
    prep: InputPrep
    weights_token: str
    layout: FeatureLayout
    batch_size: int
    threads: int
    device: str
    objective: Objective = MULTICLASS


def cached_scorer(plan: ScoringPlan, floats: np.ndarray, ints: np.ndarray) -> nn.Module:
    """The network with these weights in eval mode, from the worker's cache of networks."""
    entry = cached_network(plan.model)
    if entry.weights_token != plan.weights_token:
        entry.module.to("cpu")
        load_flat_state(entry.module, entry.layout, floats, ints)
        entry.weights_token = plan.weights_token
    return entry.module.to(task_device(plan.device)).eval()


@torch.inference_mode()
def network_scores(module: nn.Module, features: np.ndarray, *, prep: InputPrep,
                   batch_size: int, objective: Objective) -> np.ndarray:
    """The objective's ``score_rows`` of the network's outputs for ``features`` [n, *shape],
    in batches."""
    device = next(module.parameters()).device
    out = np.empty((features.shape[0], 0), np.float64)
    parts = []
    rng = np.random.default_rng(0)  # only a Caffe transform with mirror draws at test time
    for start in range(0, features.shape[0], batch_size):
        # A float32 copy: Arrow-backed arrays are read-only, torch wants writable memory.
        chunk = np.array(features[start: start + batch_size], dtype=np.float32)
        x = prep(chunk, device, train=False, rng=rng)
        parts.append(objective.score_rows(module(x).float().cpu().numpy()))
    return np.concatenate(parts) if parts else out


def score_array(plan: ScoringPlan, module: nn.Module, column: pa.Array) -> pa.Array:
    """One Arrow batch of features -> list<double> scores (null where unusable): raw,
    probability and prediction values side by side (``sparknet.models.objectives``)."""
    features, valid = decode_features(column, plan.layout, Report())
    probs = network_scores(module, features, prep=plan.prep, batch_size=plan.batch_size,
                           objective=plan.objective)
    width = probs.shape[1] if probs.ndim == 2 else 0
    full = np.zeros((len(column), width), np.float64)
    full[valid] = probs
    offsets = np.arange(len(column) + 1, dtype=np.int32) * np.int32(width)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(full.reshape(-1)),
                                    mask=None if valid.all() else pa.array(~valid))


def score_column(feature: Column, plan: ScoringPlan, weights: Shared) -> Column:
    """An Arrow UDF over ``feature`` (already in Arrow form) giving array<double> scores."""
    from pyspark.sql.functions import arrow_udf  # type: ignore[attr-defined]  # pyspark>=4.1

    def score(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        torch.set_num_threads(plan.threads)
        floats, ints = weights.value
        assert floats is not None and ints is not None
        module = cached_scorer(plan, floats, ints)
        reset_carried_state(module)  # a recurrent state carries over this task's rows only
        for batch in batches:
            yield score_array(plan, module, batch)

    udf = arrow_udf(score, "array<double>")
    return udf(feature)


def invalid_message(column: str, shape: tuple[int, ...]) -> str:
    return (f"sparknet DataError: a row of feature column {column!r} cannot be scored (null, "
            f"NaN or infinite values, not the shape of inputShape {list(shape)}, or not a "
            "decodable image): drop or fix such rows, or set handleInvalid='keep' (null "
            "outputs) or 'skip' (rows left out)")


def raise_on_null(scores: Column, message: str) -> Column:
    """``scores``, where a null (a row that could not be scored) stops the job with one line
    raised in the JVM."""
    from pyspark.sql import functions as F

    return F.when(scores.isNull(), F.raise_error(F.lit(message))).otherwise(scores)


def checked_size(feature: Column, shape: tuple[int, ...]) -> Column:
    """``feature`` (an array column), where a row of the wrong length stops the job with one
    line raised in the JVM (``raise_error``) before a Python worker sees it: the user gets
    that line, not a worker traceback. Null rows pass (they score as null)."""
    from pyspark.sql import functions as F

    size, wanted = F.size(feature), math.prod(shape)
    message = F.concat(F.lit("sparknet DataError: cannot score a row whose features have "),
                       size.cast("string"),
                       F.lit(f" values, not the {wanted} of inputShape {list(shape)}: score "
                             "data shaped like the training data, or set "
                             "handleInvalid='keep' (null outputs) or 'skip' (rows left out)"))
    return F.when(feature.isNotNull() & (size != F.lit(wanted)),
                  F.raise_error(message)).otherwise(feature)


def vector_values(column: pa.StructArray) -> pa.Array:
    """ML Vectors as Arrow sees them (VectorUDT's struct: ``type`` 0 sparse or 1 dense,
    ``size``, ``indices``, ``values``) -> list<double> of each vector's dense values."""
    names = {column.type.field(i).name for i in range(column.type.num_fields)}
    if names != {"type", "size", "indices", "values"}:
        raise DataError(f"cannot score a struct column of fields {sorted(names)}: give an ML "
                        "Vector or an array<float|double> column")
    rows: list[list[float] | None] = []
    for item in column.to_pylist():
        if item is None or item["type"] == 1:
            rows.append(None if item is None else item["values"])
            continue
        dense = np.zeros(item["size"], np.float64)
        dense[np.asarray(item["indices"], np.int64)] = item["values"]
        rows.append(dense.tolist())
    return pa.array(rows, pa.list_(pa.float64()))


def scoring_udf(plan: ScoringPlan, weights: Shared, *, start: int, width: int,
                scalar: bool) -> Any:
    """An Arrow UDF (ML Vector or array<float|double> features -> one part of the scores),
    for ``withColumn`` and ``spark.udf.register``; nulls where a row cannot be scored."""
    from pyspark.sql.functions import arrow_udf  # type: ignore[attr-defined]  # pyspark>=4.1

    def score(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        torch.set_num_threads(plan.threads)
        floats, ints = weights.value
        assert floats is not None and ints is not None
        module = cached_scorer(plan, floats, ints)
        reset_carried_state(module)  # a recurrent state carries over this task's rows only
        for batch in batches:
            if pa.types.is_struct(batch.type):
                batch = vector_values(batch)
            if pa.types.is_large_list(batch.type):
                batch = batch.cast(pa.list_(batch.type.value_type))
            scores = score_array(plan, module, batch)
            if scalar:
                yield pa.compute.list_element(scores, start).cast(pa.float64())
            else:
                yield pa.compute.list_slice(scores, start, start + width)

    return arrow_udf(score, "double" if scalar else "array<double>")


class GuardedUDF:
    """``scoring_udf``'s UDF for ``handleInvalid='error'``: called on columns, a row that
    cannot be scored stops the job with one line; ``spark.udf.register`` takes it as the plain
    UDF (SQL gets nulls for such rows)."""

    def __init__(self, udf: Any, message: str) -> None:
        self._udf = udf
        self._message = message

    def __call__(self, *columns: Any) -> Column:
        return raise_on_null(self._udf(*columns), self._message)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_udf", "_message"):
            raise AttributeError(name)
        return getattr(self._udf, name)
