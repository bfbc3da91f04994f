"""DataFrames and driver arrays -> streamed shards (``sparknet.data.streamed``).

The rows go through the same chunk conversion and round-robin repartition as the in-memory
placement (``sparknet.data.dataframe``), so shard i holds the same rows in the same order
either way and training gives the same weights. PNG/JPEG bytes stay encoded: the conversion
decodes each image once only to check it (a corrupt file is reported by its path, or skipped
and counted), and rounds decode the rows a batch needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sparknet.data.dataframe import (
    ChunkPlan,
    FrameSummary,
    Report,
    Where,
    convert_partition,
    dealt_batch,
    dealt_chunks,
    decode_labels,
    first_row,
)
from sparknet.data.frames import CHUNK_ROWS
from sparknet.data.images import UndecodableImage, decode_image, decode_pool
from sparknet.data.shards import InputSpec, Shard
from sparknet.data.sources import SparkData
from sparknet.data.streamed import StreamedShards, StreamLayout, stream_chunks
from sparknet.errors import ConfigError

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext
    from pyspark.sql import DataFrame


def convert_encoded_partition(plan: ChunkPlan, batches: Iterator[pa.RecordBatch]
                              ) -> Iterator[pa.RecordBatch]:
    """Runs on executors: rows of (bytes, label[, origin]) -> chunks of still-encoded images.

    Every image is decoded once here to check it; undecodable ones are left out and counted
    (named by their origin column when there is one).
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    shape = plan.layout.shape
    seen = 0
    for batch in batches:
        report = Report()
        where = Where(f"input partition {partition}, ", seen)
        column = batch.column(0)
        origins = batch.column(2).to_pylist() if batch.num_columns > 2 else None
        labels, keep = decode_labels(batch.column(1), plan.num_classes, report, where=where,
                                     width=plan.label_width, binary=plan.binary_targets)
        nulls = np.flatnonzero(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))
        if nulls.size:
            report.add("null_features", nulls.size, where.row(int(nulls[0])))
            keep[nulls] = False
        blobs = {int(i): column[int(i)].as_py() for i in np.flatnonzero(keep)}
        for i in _undecodable(blobs, shape, threads=2):
            name = origins[i] if origins is not None else \
                f"{where.row(i)} starts with {blobs[i][:8]!r}"
            report.add("undecodable", 1, str(name))
            keep[i] = False
        first = first_row(plan, partition, seen)
        seen += batch.num_rows
        kept = np.flatnonzero(keep)

        def payload(rows: np.ndarray, kept: np.ndarray = kept, blobs: dict[int, bytes] = blobs,
                    labels: np.ndarray = labels) -> tuple[bytes, bytes]:
            data = [blobs[int(i)] for i in kept[rows]]
            lengths = np.array([len(d) for d in data], np.int64)
            return lengths.tobytes() + b"".join(data), labels[kept[rows]].tobytes()

        yield dealt_batch(plan, first, kept, report, payload)


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


def _merged_marker(index: int, rows: int, reports: Iterable[str]) -> tuple[int, int, str]:
    merged = Report()
    for text in reports:
        merged.merge(Report.from_json(text))
    return index, rows, merged.to_json()


def streamed_frame_data(selected: DataFrame, plan: ChunkPlan, *, spec: InputSpec,
                        num_workers: int, decode_threads: int,
                        check: Callable[[list[tuple[int, str]]], FrameSummary]
                        ) -> tuple[SparkData, FrameSummary]:
    """Converts, deals and writes the shard files in one job; ``check`` raises on bad rows."""
    kind = plan.layout.kind
    layout = StreamLayout(kind="encoded" if kind == "binary" else
                          "pixels" if kind == "image" else "floats",
                          shape=spec.shape, decode_threads=decode_threads,
                          label_width=spec.label_width)
    convert = partial(convert_encoded_partition if kind == "binary" else convert_partition,
                      plan)
    chunks = dealt_chunks(selected, convert, num_workers).drop("shard", "first").rdd
    shards = stream_chunks(chunks, layout, marker=_merged_marker)
    try:
        markers: RDD[tuple[int, int, str]] = shards.handles  # type: ignore[assignment]
        stats = markers.map(lambda marker: (marker[1], marker[2])).collect()
        summary = check(stats)
    except BaseException:
        shards.release()
        raise
    return SparkData(train=shards, test=None, spec=spec, train_sizes=summary.shard_sizes,
                     test_size=0), summary


def streamed_arrays(sc: SparkContext, shards: list[Shard], *,
                    decode_threads: int = 2) -> StreamedShards:
    """Driver arrays (one ``Shard`` each) -> shard files, written by the first job on them.

    Each shard is cut into chunks, padded with empty chunks to the same count, so that
    ``parallelize`` puts shard i's chunks, in order, in partition i.
    """
    first = shards[0].features
    if first.dtype not in (np.uint8, np.float32):
        raise ConfigError(f"streamed features must be uint8 or float32, not {first.dtype}: "
                          "convert the array first (e.g. features.astype(np.float32))")
    layout = StreamLayout(kind="floats" if first.dtype == np.float32 else "pixels",
                          shape=tuple(first.shape[1:]), decode_threads=decode_threads)
    per_shard = [[(np.ascontiguousarray(s.features[i: i + CHUNK_ROWS]).tobytes(),
                   s.labels[i: i + CHUNK_ROWS].astype(np.int64).tobytes(),
                   int(s.labels[i: i + CHUNK_ROWS].shape[0]), "")
                  for i in range(0, len(s), CHUNK_ROWS)] for s in shards]
    longest = max(len(chunks) for chunks in per_shard)
    padded = [chunk for chunks in per_shard
              for chunk in chunks + [(b"", b"", 0, "")] * (longest - len(chunks))]
    rdd = sc.parallelize(padded, len(shards))
    return stream_chunks(rdd, layout, marker=_merged_marker)
