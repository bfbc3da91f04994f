"""Shards as a cached DataFrame: the placement that needs no SparkContext (Spark Connect).

A ``FrameShards`` is a DataFrame of chunks ``(shard, features, labels, rows)``: each row holds
up to ``CHUNK_ROWS`` consecutive examples of one shard as raw bytes, and every chunk of shard i
lives in partition i. Rounds read it with ``mapInArrow`` (one task per shard, a narrow scan of
Spark's cache), so a lost partition is recomputed from the DataFrame's lineage like any cached
data. Works on classic and Connect sessions alike; only DataFrame APIs are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sparknet.data.shards import Shard

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CHUNK_ROWS = 4096
CHUNK_SCHEMA = "shard int, features binary, labels binary, rows long"


@dataclass(frozen=True)
class ShardLayout:
    """How a shard's bytes become arrays: stored dtype and per-example shape (plain data)."""

    dtype: str
    shape: tuple[int, ...]
    label_width: int = 0  # 0: int64 class indices; else float32 targets [n, label_width]


@dataclass(frozen=True)
class FrameShards:
    """K shards as a cached DataFrame of chunks (see the module docstring)."""

    frame: DataFrame
    num_shards: int
    layout: ShardLayout

    @property
    def session(self) -> SparkSession:
        return self.frame.sparkSession

    def release(self) -> None:
        self.frame.unpersist()


def is_connect(spark: object) -> bool:
    """Whether ``spark`` is a Spark Connect session (which has no SparkContext)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def chunk_table(index: int, shard: Shard) -> pa.Table:
    """One shard as chunk rows."""
    starts = range(0, max(1, len(shard)), CHUNK_ROWS)
    features = [np.ascontiguousarray(shard.features[s: s + CHUNK_ROWS]).tobytes() for s in starts]
    labels = [shard.labels[s: s + CHUNK_ROWS].astype(label_dtype(shard.labels.ndim - 1))
              .tobytes() for s in starts]
    rows = [int(shard.labels[s: s + CHUNK_ROWS].shape[0]) for s in starts]
    return pa.table({"shard": pa.array([index] * len(rows), pa.int32()),
                     "features": pa.array(features, pa.binary()),
                     "labels": pa.array(labels, pa.binary()),
                     "rows": pa.array(rows, pa.int64())})


def frame_shards(spark: SparkSession, shards: list[Shard]) -> FrameShards:
    """Sends arrays from the driver to the executors once, as a cached DataFrame of chunks."""
    table = pa.concat_tables([chunk_table(i, s) for i, s in enumerate(shards)])
    frame = spark.createDataFrame(table).repartitionByRange(len(shards), "shard").cache()
    labels = shards[0].labels
    layout = ShardLayout(dtype=str(shards[0].features.dtype), shape=shards[0].features.shape[1:],
                         label_width=0 if labels.ndim == 1 else labels.shape[1])
    return FrameShards(frame=frame, num_shards=len(shards), layout=layout)


def read_shards(batches: Iterable[pa.RecordBatch], layout: ShardLayout
                ) -> Iterator[tuple[int, Shard]]:
    """Runs in a task: the chunks of each shard in this partition -> (index, Shard).

    Chunks keep their order within a partition, so a shard's rows come back in the order they
    were stored.
    """
    parts: dict[int, tuple[list[Any], list[Any]]] = {}
    for batch in batches:
        columns = batch.to_pydict()
        for index, features, labels in zip(columns["shard"], columns["features"],
                                           columns["labels"], strict=True):
            found = parts.setdefault(int(index), ([], []))
            found[0].append(features)
            found[1].append(labels)
    dtype = np.dtype(layout.dtype)
    for index in sorted(parts):
        features, labels = parts[index]
        # bytearray: writable memory, which torch.from_numpy expects.
        yield index, Shard(
            np.frombuffer(bytearray(b"".join(features)), dtype).reshape(-1, *layout.shape),
            labels_from_bytes(bytearray(b"".join(labels)), layout.label_width))


def label_dtype(label_width: int) -> type[np.generic]:
    return np.int64 if label_width == 0 else np.float32


def labels_from_bytes(data: bytes | bytearray, label_width: int) -> np.ndarray:
    """Stored label bytes -> int64 class indices ``[n]`` or float32 targets ``[n, width]``."""
    labels = np.frombuffer(data, label_dtype(label_width))
    return labels if label_width == 0 else labels.reshape(-1, label_width)
