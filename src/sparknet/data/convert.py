"""DataFrame batches -> chunks (on the executors), and the driver's verdict on what they saw.

``convert_partition`` runs in a ``mapInArrow`` task: it decodes each Arrow batch through the
column kind's decoder (``sparknet.data.columns``), counts the unusable rows in a ``Report``
and deals the usable ones into chunks (``sparknet.data.chunks``). Encoded images bound for
shard files stay encoded: each is decoded once only to check it. ``check_reports`` reads the
merged reports on the driver and raises one ``DataError`` line before any training round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from sparknet.data.chunks import ChunkLayout, dealt_batch, encoded_payload
from sparknet.data.columns import (
    FeatureLayout,
    Report,
    Where,
    decode_features,
    decode_labels,
    decode_weights,
    storage_dtype,
)
from sparknet.data.images import UndecodableImage, decode_image, decode_pool
from sparknet.data.shards import InputSpec, pack_row_weights
from sparknet.errors import DataError

InvalidImages = Literal["error", "skip"]


@dataclass(frozen=True, kw_only=True)
class ChunkPlan:
    """Plain data a conversion task needs."""

    features: FeatureLayout  # how to decode the feature column
    chunks: ChunkLayout  # how the chunks store the rows
    num_classes: int
    chunk_rows: int
    binary_targets: bool = False
    row_weights: bool = False  # a "weight" column is packed after the labels
    target_width: int = 0  # the label column's width (0: class indices), weights or not
    num_shards: int = 1
    offsets: tuple[int, ...] = (0,)  # rows before each input partition


def convert_partition(plan: ChunkPlan, batches: Iterator[pa.RecordBatch]
                      ) -> Iterator[pa.RecordBatch]:
    """Runs on executors: Arrow batches (features, label[, origin][, weight]) -> chunks plus a
    report."""
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    seen = 0
    for batch in batches:
        report = Report()
        where = Where(f"input partition {partition}, ", seen)
        labels, keep = decode_labels(
            batch.column(1), plan.num_classes, report, where=where, width=plan.target_width,
            binary=plan.binary_targets)
        if plan.row_weights:
            weights, weighed = decode_weights(batch.column(batch.schema.get_field_index("weight")),
                                              report, where=where)
            keep &= weighed
            labels = pack_row_weights(labels, weights)
        if plan.chunks.stored == "encoded":
            payload = _checked_encoded(batch, plan, report, where, keep, labels)
        else:
            payload = _decoded(batch, plan, report, where, keep, labels)
        first = first_row(plan, partition, seen)
        seen += batch.num_rows
        yield dealt_batch(num_shards=plan.num_shards, chunk_rows=plan.chunk_rows, first=first,
                          kept=np.flatnonzero(keep), report=report.to_json(), payload=payload)


Payload = Callable[[np.ndarray], tuple[bytes, bytes]]


def _decoded(batch: pa.RecordBatch, plan: ChunkPlan, report: Report, where: Where,
             keep: np.ndarray, labels: np.ndarray) -> Payload:
    """Decodes the features; narrows ``keep`` to rows usable in both columns."""
    features, usable = decode_features(batch.column(0), plan.features, report, where=where)
    both = keep & usable
    kept_features = features[both[usable]].astype(storage_dtype(plan.features.kind),
                                                  copy=False)
    kept_labels = labels[both]
    keep &= usable

    def payload(rows: np.ndarray) -> tuple[bytes, bytes]:
        return (np.ascontiguousarray(kept_features[rows]).tobytes(),
                plan.chunks.label_bytes_of(kept_labels[rows]))

    return payload


def _checked_encoded(batch: pa.RecordBatch, plan: ChunkPlan, report: Report, where: Where,
                     keep: np.ndarray, labels: np.ndarray) -> Payload:
    """Keeps images encoded; each is decoded once to check it (an optional third column,
    e.g. the file's path, names an undecodable one)."""
    column = batch.column(0)
    at = batch.schema.get_field_index("origin")
    origins = batch.column(at).to_pylist() if at >= 0 else None
    nulls = np.flatnonzero(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))
    if nulls.size:
        report.add("null_features", nulls.size, where.row(int(nulls[0])))
        keep[nulls] = False
    blobs = {int(i): column[int(i)].as_py() for i in np.flatnonzero(keep)}
    for i in _undecodable(blobs, plan.chunks.shape, threads=2):
        name = origins[i] if origins is not None else \
            f"{where.row(i)} starts with {blobs[i][:8]!r}"
        report.add("undecodable", 1, str(name))
        keep[i] = False
    kept = np.flatnonzero(keep)

    def payload(rows: np.ndarray) -> tuple[bytes, bytes]:
        return (encoded_payload([blobs[int(i)] for i in kept[rows]]),
                plan.chunks.label_bytes_of(labels[kept[rows]]))

    return payload


def _undecodable(blobs: dict[int, bytes], shape: tuple[int, ...], *, threads: int
                 ) -> list[int]:
    def broken(item: tuple[int, bytes]) -> int | None:
        try:
            decode_image(item[1], shape)
        except UndecodableImage:
            return item[0]
        return None

    if not blobs:
        return []
    return sorted(i for i in decode_pool(threads).map(broken, blobs.items()) if i is not None)


def first_row(plan: ChunkPlan, partition: int, seen: int) -> int:
    """The input row number (over every input partition) of a partition's row ``seen``.

    A partition the count did not see has no rows (a filter can empty any partition)."""
    return (plan.offsets[partition] if partition < len(plan.offsets) else 0) + seen


@dataclass(frozen=True, kw_only=True)
class FrameSummary:
    """What the conversion saw: usable rows per shard and the rows skipped (bad images)."""

    shard_sizes: tuple[int, ...]
    skipped_images: int
    skipped_example: str | None
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out, by problem


_SKIP = ", or set handleInvalid='skip' to leave them out"
_MESSAGES = {
    "null_features": "{n} rows have a null in feature column {f!r} (e.g. {ex}): drop them first, "
                     "e.g. df.dropna(subset=[{f!r}])" + _SKIP,
    "null_labels": "{n} rows have a null label in column {l!r} (e.g. {ex}): drop them first, "
                   "e.g. df.dropna(subset=[{l!r}])" + _SKIP,
    "wrong_length": "{n} rows of feature column {f!r} do not have {size} values, the product "
                    "of inputShape {shape} (e.g. {ex}): set inputShape to the vectors' shape"
                    + _SKIP,
    "non_finite": "{n} rows of feature column {f!r} hold NaN or infinite values (e.g. {ex}): "
                  "drop or impute them (pyspark.ml.feature.Imputer) before training" + _SKIP,
    "bad_label": "{n} labels in column {l!r} are not integers in [0, {c}) (e.g. {ex}): index "
                 "labels with StringIndexer, or use a network with more outputs (numClasses)",
    "wrong_label_width": "{n} rows of label column {l!r} do not have {c} values, one per "
                         "network output (e.g. {ex}): give targets as wide as the network's "
                         "output",
    "bad_binary_label": "{n} labels in column {l!r} are not 0 or 1 (e.g. {ex}): the "
                        "objective needs 0/1 targets",
    "bad_target": "{n} targets in column {l!r} are NaN or infinite (e.g. {ex}): drop or impute "
                  "those rows before training" + _SKIP,
    "wrong_image": "{n} images in column {f!r} do not match inputShape {shape} "
                   "[channels, height, width] (e.g. {ex}): resize them or fix inputShape"
                   + _SKIP,
    "bad_weight": "{n} rows have a null, NaN, infinite or negative weight in column {w!r} "
                  "(e.g. {ex}): weights must be finite numbers >= 0" + _SKIP,
    "undecodable": "{n} rows of column {f!r} are not decodable PNG/JPEG images (e.g. {ex}): "
                   "fix or drop them, or set invalidImages='skip' (or handleInvalid='skip') "
                   "to skip and count them",
}


# The problems ``skip_invalid`` leaves out (the rows are already out of the shards); a label
# out of range or a target of the wrong width is a setting to fix, never skipped.
SKIPPABLE = ("null_features", "wrong_length", "non_finite", "wrong_image", "undecodable",
             "null_labels", "bad_target", "bad_weight")


def check_reports(stats: list[tuple[int, str]], *, features: str, label: str,
                  spec: InputSpec, invalid_images: InvalidImages,
                  skip_invalid: bool = False, weight: str | None = None) -> FrameSummary:
    """Per shard (usable rows, report JSON) -> the summary, or one DataError line."""
    report = Report()
    for _, text in stats:
        report.merge(Report.from_json(text))
    skipped = {k: report.counts[k] for k in SKIPPABLE if report.counts.get(k) and
               (skip_invalid or (k == "undecodable" and invalid_images == "skip"))}
    blocking = [k for k in _MESSAGES if report.counts.get(k) and k not in skipped]
    if blocking:
        kind = blocking[0]
        message = _MESSAGES[kind].format(
            n=report.counts[kind], f=features, l=label, w=weight, ex=report.examples[kind],
            size=math.prod(spec.shape), shape=list(spec.shape), c=spec.num_classes)
        others = [f"{report.counts[k]} {k}" for k in blocking[1:]]
        raise DataError(message + (f" (also: {', '.join(others)})" if others else ""))
    sizes = tuple(size for size, _ in stats)
    if min(sizes) == 0:
        raise DataError(f"after skipping {sum(skipped.values())} invalid rows ({skipped}) a "
                        f"shard is empty (rows per shard: {list(sizes)}): use fewer workers or "
                        "fix the rows")
    return FrameSummary(shard_sizes=sizes, skipped_images=skipped.get("undecodable", 0),
                        skipped_example=report.examples.get("undecodable"), skipped=skipped)
