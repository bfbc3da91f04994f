"""Inputs -> chunks -> a placement: every way training data reaches Spark.

- driver arrays (``from_arrays``, ``fashion_mnist_data``): shuffled once with the seed and
  dealt into K shards on the driver, then placed;
- a DataFrame (``dataframe_data``; Parquet, image folders and the ML Estimator go through it):
  checked (one count), converted batch by batch into chunks on the executors
  (``sparknet.data.convert``), shard i's chunks gathered in partition i in input order
  (``dealt_chunks``), then placed in the same job; bad rows stop here with one line.

``placement_for`` picks the placement from the session and the ``streamed`` flag: ``memory``
on a classic session, ``frames`` on Spark Connect, ``streamed`` for shard files. The same
rows give the same shards, in the same order, on every placement, so the same weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sparknet.data import fashion_mnist
from sparknet.data.chunks import CHUNK_SCHEMA, ChunkLayout, layout_of_arrays
from sparknet.data.columns import (
    KINDS,
    FeatureKind,
    FeatureLayout,
    check_columns,
    check_image_shape,
    check_weight_column,
    feature_expr,
    label_expr,
    label_form,
)
from sparknet.data.convert import (
    ChunkPlan,
    FrameSummary,
    InvalidImages,
    check_reports,
    convert_partition,
)
from sparknet.data.images import image_folder_frame
from sparknet.data.placement import Placement, SparkData, is_connect
from sparknet.data.placements.frames import FramePlacement
from sparknet.data.placements.memory import MemoryPlacement
from sparknet.data.placements.streamed import StreamedPlacement
from sparknet.data.shards import InputSpec, contiguous_shards, split_into_shards
from sparknet.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import DataFrame, SparkSession

_MAX_CHUNK_ROWS = 512  # rows per chunk of a DataFrame's rows


def placement_for(spark: Any, *, streamed: bool = False, decode_threads: int = 2) -> Placement:
    """The placement for this session: files when ``streamed``, else Spark's memory (a
    DataFrame of chunks on Spark Connect, which has no SparkContext)."""
    if is_connect(spark):
        if streamed:
            raise ConfigError("streamed shards need a classic Spark session (they live in the "
                              "executors' local folders); on Spark Connect train in memory")
        return FramePlacement()
    if streamed:
        return StreamedPlacement(decode_threads=decode_threads)
    return MemoryPlacement()


# ---------------------------------------------------------------------------------------------
# Driver arrays


def from_arrays(spark: SparkSession | SparkContext, *, train: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray] | None, spec: InputSpec, num_workers: int,
                seed: int, streamed: bool = False, decode_threads: int = 2) -> SparkData:
    """Shuffles the training arrays into ``num_workers`` shards and sends them once.

    Features are uint8 or float32 ``[n, *spec.shape]``; labels are int64 class indices
    ``[n]`` or float32 targets ``[n, spec.label_width]``. ``streamed`` writes each shard to a
    file on its executor instead: the same shards, so the same weights, read a batch at a time.
    """
    train = _normalised("train", *train, spec)
    # Test data is scored unweighted: its labels are plain class indices or targets.
    test = (_normalised("test", *test, dataclasses.replace(spec, row_weights=False))
            if test is not None else None)
    placement = placement_for(spark, streamed=streamed, decode_threads=decode_threads)
    layout = layout_of_arrays(*train)
    train_shards = split_into_shards(*train, num_workers, seed=seed)
    placed_train = placement.place_shards(spark, train_shards, layout)
    placed_test = None
    if test is not None:
        try:
            placed_test = placement.place_shards(
                spark, contiguous_shards(*test, num_workers), layout_of_arrays(*test))
        except BaseException:
            placed_train.release()
            raise
    return SparkData(train=placed_train, test=placed_test, spec=spec,
                     train_sizes=tuple(len(s) for s in train_shards),
                     test_size=int(test[1].shape[0]) if test is not None else 0)


def _normalised(name: str, features: np.ndarray, labels: np.ndarray, spec: InputSpec
                ) -> tuple[np.ndarray, np.ndarray]:
    """The arrays as every placement stores them, or one line before any job.

    Features stay uint8 (images) or become float32 (as the workers' input preparation would
    convert them); labels become int64 class indices or float32 targets of the spec's width.
    """
    features, labels = np.asarray(features), np.asarray(labels)
    if features.dtype != np.uint8:
        if not (np.issubdtype(features.dtype, np.number) or features.dtype == np.bool_):
            raise ConfigError(f"{name}: features of dtype {features.dtype} are not numbers: "
                              "give uint8 pixels or float values")
        features = features.astype(np.float32, copy=False)
    if features.ndim < 2 or features.shape[0] != labels.shape[0]:
        raise ConfigError(f"{name}: features of shape {list(features.shape)} and "
                          f"{labels.shape[0]} labels: give [n, *shape] features and one label "
                          "(or row of targets) per example")
    if math.prod(features.shape[1:]) != math.prod(spec.shape):
        raise ConfigError(f"{name}: {math.prod(features.shape[1:])} feature values per "
                          f"example, but the input shape {list(spec.shape)} needs "
                          f"{math.prod(spec.shape)}: reshape the array or fix InputSpec.shape")
    if spec.row_weights:
        return features, _weighted_labels(name, labels, spec)
    if spec.label_width == 0:
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(f"{name}: labels of shape {list(labels.shape)} and dtype "
                              f"{labels.dtype}, but the input spec (label_width=0) needs "
                              "integer class indices [n]: fix the labels or set "
                              "InputSpec.label_width to the targets' width")
        return features, labels.astype(np.int64, copy=False)
    width = 1 if labels.ndim == 1 else labels.shape[1]
    if labels.ndim > 2 or width != spec.label_width:
        raise ConfigError(f"{name}: labels of shape {list(labels.shape)}, but the input spec "
                          f"needs float targets [n, {spec.label_width}] (label_width): fix "
                          "the labels or InputSpec.label_width")
    return features, labels.reshape(-1, width).astype(np.float32, copy=False)


def _weighted_labels(name: str, labels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Labels packed with their row weights (``pack_row_weights``), checked."""
    width = spec.stored_label_width
    if labels.ndim != 2 or labels.shape[1] != width:
        raise ConfigError(f"{name}: labels of shape {list(labels.shape)}, but row weights "
                          f"need [n, {width}] (the labels, then each row's weight): build them "
                          "with sparknet.data.shards.pack_row_weights(labels, weights)")
    packed = labels.astype(np.float32, copy=False)
    weights = packed[:, -1]
    if not (np.isfinite(packed).all() and (weights >= 0).all()):
        raise ConfigError(f"{name}: the labels or row weights hold NaN, infinite or negative "
                          "values: weights must be finite and >= 0")
    return packed


def fashion_mnist_data(sc: SparkSession | SparkContext, *, num_workers: int, seed: int,
                       data_dir: str | Path = fashion_mnist.DEFAULT_DIR,
                       train_limit: int | None = None, test_limit: int | None = None,
                       streamed: bool = False, decode_threads: int = 2) -> SparkData:
    """Fashion-MNIST as uint8 shards (scaled by 1/255 in the workers); ``streamed``: as
    shard files on the executors."""
    train = fashion_mnist.load_split("train", data_dir)
    test = fashion_mnist.load_split("test", data_dir)
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    return from_arrays(sc, train=(train.images[:train_limit], train.labels[:train_limit]),
                       test=(test.images[:test_limit], test.labels[:test_limit]), spec=spec,
                       num_workers=num_workers, seed=seed, streamed=streamed,
                       decode_threads=decode_threads)


# ---------------------------------------------------------------------------------------------
# DataFrames


def dataframe_data(df: DataFrame, *, features: str, label: str, spec: InputSpec,
                   num_workers: int, batch_size: int, invalid_images: InvalidImages = "error",
                   kind: FeatureKind | None = None, streamed: bool = False,
                   decode_threads: int = 2, origin: str | None = None,
                   skip_invalid: bool = False, weight: str | None = None
                   ) -> tuple[SparkData, FrameSummary]:
    """Validates ``df`` and places it as ``num_workers`` shards; raises DataError on bad rows.

    ``kind`` is the feature kind when the caller has already checked the columns. Jobs: one
    count, a tiny one for the partition keys (``dealt_chunks``) and one conversion pass that
    places the shards. Nothing here trains; every error is raised before the first round.

    ``streamed`` writes each shard to a file on its executor: the same rows in the same
    order, so training gives the same weights, with PNG/JPEG bytes kept encoded until a batch
    needs them (decoded by ``decode_threads`` threads). ``origin`` names a column (e.g. the
    file path) that error messages quote for a bad row. ``skip_invalid`` leaves rows with null,
    NaN or misshapen features or a null/NaN label out instead of raising (counted in the
    summary's ``skipped``). ``weight`` names a column of row weights (``weightCol``): they
    are stored after the labels (``spec.row_weights`` must be set) and a null, NaN, infinite
    or negative weight is an invalid row like the others.
    """
    if (weight is not None) != spec.row_weights:
        raise ConfigError(f"weight={weight!r} with spec.row_weights={spec.row_weights}: name a "
                          "weight column exactly when the spec stores row weights")
    if kind is None:
        kind = check_columns(df, features=features, label=label)
        if spec.label_width == 0 and label_form(df.schema[label].dataType) != "number":
            raise DataError(f"label column {label!r} holds vectors but the input spec wants "
                            "class indices (label_width=0): give one number per row, or set "
                            "label_width to the targets' width")
        check_image_shape(kind, spec.shape, column=features)
    if weight is not None:
        check_weight_column(df, weight)
    if invalid_images not in ("error", "skip"):
        raise ConfigError(f"invalidImages={invalid_images!r} is invalid: use 'error' or 'skip'")
    placement = placement_for(df.sparkSession, streamed=streamed, decode_threads=decode_threads)
    selected = df.select(feature_expr(features, kind).alias("features"),
                         label_expr(label, df.schema[label].dataType).alias("label"),
                         *([df[origin].cast("string").alias("origin")] if origin else []),
                         *([df[weight].cast("double").alias("weight")] if weight else []))
    offsets = _partition_offsets(selected)
    total = offsets[-1]
    if total == 0:
        raise DataError(f"the DataFrame is empty: there is nothing to train on in columns "
                        f"{features!r}/{label!r}; check the filter or the path it was read from")
    if total < num_workers * batch_size:
        raise DataError(f"the DataFrame has {total} rows, fewer than numWorkers x batchSize = "
                        f"{num_workers} x {batch_size} = {num_workers * batch_size}: use fewer "
                        "workers, a smaller batch size, or more data")
    column = KINDS[kind]
    layout = ChunkLayout(stored=column.streamed if placement.keeps_encoded else column.stored,
                         shape=spec.shape, label_width=spec.stored_label_width)
    plan = ChunkPlan(features=FeatureLayout(kind=kind, shape=spec.shape), chunks=layout,
                     num_classes=spec.num_classes,
                     chunk_rows=max(1, min(_MAX_CHUNK_ROWS, total // (4 * num_workers))),
                     binary_targets=spec.binary_targets, num_shards=num_workers,
                     row_weights=spec.row_weights, target_width=spec.label_width,
                     offsets=offsets[:-1])
    chunks = dealt_chunks(selected, partial(convert_partition, plan), num_workers)
    placed, stats = placement.place_chunks(chunks, layout, num_workers)
    try:
        summary = check_reports(stats, features=features, label=label, spec=spec,
                                invalid_images=invalid_images, skip_invalid=skip_invalid,
                                weight=weight)
    except BaseException:
        placed.release()
        raise
    return SparkData(train=placed, test=None, spec=spec, train_sizes=summary.shard_sizes,
                     test_size=0), summary


def _partition_offsets(selected: DataFrame) -> tuple[int, ...]:
    """Rows before each input partition, and the total last: one aggregation job."""
    from pyspark.sql import functions as F

    counts = {int(row.partition): int(row["count"]) for row in
              selected.groupBy(F.spark_partition_id().alias("partition")).count().collect()}
    sizes = [counts.get(p, 0) for p in range(max(counts, default=-1) + 1)]
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))


def dealt_chunks(selected: DataFrame, convert: Callable[[Iterator[pa.RecordBatch]],
                                                        Iterator[pa.RecordBatch]],
                 num_shards: int) -> DataFrame:
    """The chunks ``convert`` makes, shard i's in partition i in input order.

    ``convert`` names each chunk's shard; a chunk's place depends only on the input row
    numbers it holds, never on its bytes, and each partition is sorted by the first of them,
    because a shuffle on a cluster delivers blocks in arrival order: a shard holds the same
    rows in the same order on every run, retry and recomputation, for every placement.
    """
    keys = _partition_keys(selected.sparkSession, num_shards)

    def keyed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in convert(batches):
            shards = batch.column(0).to_numpy(zero_copy_only=False)
            yield batch.append_column("dest", pa.array(np.asarray(keys)[shards], pa.int64()))

    return (selected.mapInArrow(keyed, f"{CHUNK_SCHEMA}, dest long")
            .repartition(num_shards, "dest").sortWithinPartitions("first").drop("dest"))


def _partition_keys(spark: Any, num_partitions: int) -> list[int]:
    """For each partition k, the smallest long that Spark's hash partitioning sends to k."""
    from pyspark.sql import functions as F

    keys: dict[int, int] = {}
    limit = 64 * num_partitions
    while len(keys) < num_partitions:
        rows = (spark.range(0, limit).select("id", F.pmod(F.hash("id"), F.lit(num_partitions))
                                             .alias("k"))
                .groupBy("k").agg(F.min("id").alias("id")).collect())
        keys = {int(row["k"]): int(row["id"]) for row in rows}
        limit *= 4
    return [keys[k] for k in range(num_partitions)]


# ---------------------------------------------------------------------------------------------
# Image folders


def image_folder_data(spark: SparkSession, train: str | Path, *, val: str | Path | None,
                      spec: InputSpec, num_workers: int, batch_size: int,
                      invalid_images: InvalidImages = "error", decode_threads: int = 2,
                      streamed: bool = True) -> tuple[SparkData, list[str], FrameSummary]:
    """Image folders -> (training and validation shards, class names, what the check saw).

    Streamed by default: each shard is a file of still-encoded images on its executor, decoded
    a batch at a time. A corrupt file stops here, before training, with its path (or is
    skipped and counted with ``invalid_images='skip'``).
    """
    check_image_shape("binary", spec.shape, column="image")
    frame, classes = image_folder_frame(spark, train)
    if len(classes) != spec.num_classes:
        raise DataError(f"{train} has {len(classes)} class folders but the network has "
                        f"{spec.num_classes} outputs: use a network with {len(classes)} "
                        "outputs (or fix the folders)")
    common: dict[str, Any] = {"features": "image", "label": "label", "spec": spec,
                              "num_workers": num_workers, "invalid_images": invalid_images,
                              "kind": "binary", "streamed": streamed,
                              "decode_threads": decode_threads, "origin": "origin"}
    data, summary = dataframe_data(frame, batch_size=batch_size, **common)
    if val is None:
        return data, classes, summary
    val_frame, _ = image_folder_frame(spark, val, classes=classes, flag="--val-images")
    try:
        val_data, val_summary = dataframe_data(val_frame, batch_size=1, **common)
    except BaseException:
        data.release()
        raise
    return (SparkData(train=data.train, test=val_data.train, spec=spec,
                      train_sizes=data.train_sizes, test_size=sum(val_summary.shard_sizes)),
            classes, summary)
