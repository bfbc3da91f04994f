"""Spark DataFrames -> training shards, through Arrow batches; no per-row Python objects.

Three layers:

- ``feature_kind`` / ``check_columns`` read the schema only (no Spark job);
- ``decode_features`` / ``decode_labels`` are pure functions from Arrow arrays to NumPy that
  also count what is wrong with the rows (nulls, lengths, NaN, labels, image bytes);
- ``dataframe_data`` runs the Spark side: one count, then one pass that converts every Arrow
  batch, deals chunks of rows into K partitions and caches one ``Shard`` per partition. The
  driver reads the per-partition reports and raises a ``DataError`` before any training round.

Supported feature columns: ML ``Vector`` (dense or sparse), ``array<numeric>``, ``binary``
holding encoded PNG/JPEG images, and the struct of Spark's ``image`` data source.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from sparknet.data.frames import (
    FrameShards,
    ShardLayout,
    is_connect,
    label_dtype,
    labels_from_bytes,
)
from sparknet.data.shards import InputSpec, LabelForm, Shard
from sparknet.data.sources import ShardSet, SparkData
from sparknet.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

FeatureKind = Literal["vector", "array", "binary", "image"]
InvalidImages = Literal["error", "skip"]
IMAGE_FIELDS = ("origin", "height", "width", "nChannels", "mode", "data")
_MAX_CHUNK_ROWS = 512
CHUNKS = "shard int, first long, features binary, labels binary, rows long, report string"
_NUMERIC = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType")
_INTEGRAL = ("ByteType", "ShortType", "IntegerType", "LongType")


# ---------------------------------------------------------------------------------------------
# Schema (no Spark job)


def feature_kind(data_type: DataType, *, column: str) -> FeatureKind:
    """How a feature column is stored; a DataError names the column and the accepted types."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import ArrayType, BinaryType, StructType

    if isinstance(data_type, VectorUDT):
        return "vector"
    if isinstance(data_type, ArrayType) and type(data_type.elementType).__name__ in _NUMERIC:
        return "array"
    if isinstance(data_type, BinaryType):
        return "binary"
    if isinstance(data_type, StructType) and set(IMAGE_FIELDS) <= set(data_type.fieldNames()):
        return "image"
    raise DataError(f"feature column {column!r} has type {data_type.simpleString()}, which "
                    "sparknet cannot read: use an ML Vector, array<float>/array<double>, binary "
                    "PNG/JPEG bytes, or the struct of spark.read.format('image')")


def check_columns(df: DataFrame, *, features: str, label: str | None) -> FeatureKind:
    """Checks that the columns exist and have usable types; returns the feature kind.

    The label column must hold numbers or vectors of numbers; which of the two is the
    objective's to say (``label_form`` gives the objective the column's form).
    """
    fields = {f.name: f.dataType for f in df.schema.fields}
    for role, name in (("features", features), ("label", label)):
        if name is not None and name not in fields:
            raise DataError(f"{role} column {name!r} is not in the DataFrame (columns: "
                            f"{sorted(fields)}): set {role}Col to one of them")
    if label is not None and label_form(fields[label]) is None:
        raise DataError(f"label column {label!r} has type {fields[label].simpleString()}, "
                        "which sparknet cannot read as labels: use one number per row "
                        "(index string labels with pyspark.ml.feature.StringIndexer first) "
                        "or an ML Vector or array<double> of targets")
    return feature_kind(fields[features], column=features)


def label_is_vector(data_type: DataType) -> bool:
    """Whether a label column holds vectors or arrays (else one number per row)."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import ArrayType

    return isinstance(data_type, VectorUDT) or (
        isinstance(data_type, ArrayType) and type(data_type.elementType).__name__ in _NUMERIC)


def label_form(data_type: DataType) -> LabelForm | None:
    """How a label column holds one row's label (None: as nothing sparknet reads)."""
    if label_is_vector(data_type):
        return "vector"
    return "number" if type(data_type).__name__ in _NUMERIC else None


def label_expr(column: str, data_type: DataType) -> Column:
    """The label column as Arrow will see it: double, or array<float> for vector targets."""
    from pyspark.sql import functions as F

    if label_is_vector(data_type):
        from pyspark.ml.linalg import VectorUDT

        return feature_expr(column, "vector" if isinstance(data_type, VectorUDT) else "array")
    return F.col(column).cast("double")


def feature_expr(column: str, kind: FeatureKind) -> Column:
    """The column as Arrow will see it: vectors become array<float> in the JVM."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    if kind == "vector":
        return vector_to_array(F.col(column), "float32")
    if kind == "array":
        return F.col(column).cast("array<float>")
    if kind == "image":
        return F.struct(*[F.col(f"{column}.{name}").alias(name) for name in IMAGE_FIELDS])
    return F.col(column)


def storage_dtype(kind: FeatureKind) -> np.dtype[Any]:
    """Images stay uint8 (4x smaller shards); numeric features are float32."""
    return np.dtype(np.uint8) if kind in ("binary", "image") else np.dtype(np.float32)


def default_scale(kind: FeatureKind) -> float:
    return 1 / 255 if kind in ("binary", "image") else 1.0


# ---------------------------------------------------------------------------------------------
# Pure conversion: Arrow arrays -> NumPy, with a report of what is wrong


@dataclass
class Report:
    """Counts of problem rows by kind, with the first example of each (plain, JSON-able)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, count: int, example: str) -> None:
        if count:
            self.counts[kind] = self.counts.get(kind, 0) + int(count)
            self.examples.setdefault(kind, example)

    def merge(self, other: Report) -> None:
        for kind, count in other.counts.items():
            self.add(kind, count, other.examples[kind])

    def to_json(self) -> str:
        return json.dumps({"counts": self.counts, "examples": self.examples})

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text) if text else {}
        return cls(dict(data.get("counts", {})), dict(data.get("examples", {})))


@dataclass(frozen=True, kw_only=True)
class FeatureLayout:
    """Plain data the executors need to decode a feature column."""

    kind: FeatureKind
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Where:
    """Names a row in error messages: ``prefix`` + row number counted from ``first_row``."""

    prefix: str = ""
    first_row: int = 0

    def row(self, index: int) -> str:
        return f"{self.prefix}row {self.first_row + index}"


def decode_features(column: pa.Array, layout: FeatureLayout, report: Report, *,
                    where: Where = Where()) -> tuple[np.ndarray, np.ndarray]:
    """(features of the usable rows ``[m, *shape]``, bool mask of usable rows ``[n]``).

    Rows that are null, have the wrong size, hold NaN/inf or cannot be decoded are left out
    of the mask and counted in ``report`` under ``null_features``, ``wrong_length``,
    ``non_finite``, ``undecodable`` or ``wrong_image``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    nulls = np.flatnonzero(~valid)
    if nulls.size:
        report.add("null_features", nulls.size, where.row(int(nulls[0])))
    if layout.kind in ("vector", "array"):
        return _decode_numeric(column, layout, report, valid, where)
    if layout.kind == "image":
        return _decode_image_struct(column, layout, report, valid, where)
    return _decode_encoded(column, layout, report, valid, where)


def _decode_numeric(column: pa.Array, layout: FeatureLayout, report: Report, valid: np.ndarray,
                    where: Where) -> tuple[np.ndarray, np.ndarray]:
    size = math.prod(layout.shape)
    offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    lengths = np.diff(offsets)
    wrong = valid & (lengths != size)
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        report.add("wrong_length", int(wrong.sum()),
                   f"{where.row(first)} has length {int(lengths[first])}")
        valid = valid & ~wrong
    values = column.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.null_count:
        # A null element inside an array: NaN here, so it is counted as not finite below.
        flat = np.where(np.asarray(values.is_null().to_numpy(zero_copy_only=False)), np.nan,
                        flat).astype(np.float32)
    rows = np.flatnonzero(valid)
    block = _gather(flat, offsets[:-1] - offsets[0], rows, size)
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        first = int(rows[np.flatnonzero(~finite)[0]])
        report.add("non_finite", int((~finite).sum()),
                   f"{where.row(first)} holds NaN, infinity or a null element")
        valid[rows[~finite]] = False
        block = block[finite]
    return block.reshape(-1, *layout.shape), valid


def _decode_image_struct(column: pa.Array, layout: FeatureLayout, report: Report,
                         valid: np.ndarray, where: Where) -> tuple[np.ndarray, np.ndarray]:
    channels, height, width = _chw(layout.shape)
    parts = dict(zip([f.name for f in column.type], column.flatten(), strict=True))
    origin = parts["origin"]
    heights = _ints(parts["height"])
    widths = _ints(parts["width"])
    depth = _ints(parts["nChannels"])
    offsets, values = _binary_buffers(parts["data"])
    sizes = np.diff(offsets)
    # The image source marks files it cannot decode with height -1 and no data.
    broken = valid & ((heights < 1) | (sizes == 0))
    if broken.any():
        first = int(np.flatnonzero(broken)[0])
        report.add("undecodable", int(broken.sum()),
                   f"{where.row(first)} (origin {origin[first].as_py()!r})")
    valid = valid & ~broken
    wrong = valid & ((heights != height) | (widths != width) | (depth != channels) |
                     (sizes != height * width * channels))
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        report.add("wrong_image", int(wrong.sum()),
                   f"{where.row(first)} (origin {origin[first].as_py()!r}) is "
                   f"{int(depth[first])}x{int(heights[first])}x{int(widths[first])}")
        valid = valid & ~wrong
    rows = np.flatnonzero(valid)
    size = height * width * channels
    pixels = _gather(values, offsets[:-1], rows, size).reshape(-1, height, width, channels)
    return _to_chw(pixels, bgr=True), valid


def _decode_encoded(column: pa.Array, layout: FeatureLayout, report: Report, valid: np.ndarray,
                    where: Where) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = _chw(layout.shape)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    pixels = np.empty((len(column), height, width, channels), np.uint8)
    for i in np.flatnonzero(valid):
        raw = column[int(i)].as_py()
        try:
            with Image.open(io.BytesIO(raw)) as image:
                decoded = image.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            report.add("undecodable", 1, f"{where.row(int(i))} starts with {raw[:8]!r}")
            valid[i] = False
            continue
        if decoded.size != (width, height):
            report.add("wrong_image", 1,
                       f"{where.row(int(i))} is {decoded.size[1]}x{decoded.size[0]}")
            valid[i] = False
            continue
        pixels[i] = np.asarray(decoded, np.uint8).reshape(height, width, channels)
    return _to_chw(pixels[valid], bgr=False), valid


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    channels, height, width = shape  # checked by check_image_shape
    return channels, height, width


def check_image_shape(kind: FeatureKind, shape: tuple[int, ...], *, column: str) -> None:
    if kind in ("binary", "image") and (len(shape) != 3 or shape[0] not in (1, 3, 4)):
        raise ConfigError(f"inputShape={list(shape)} does not fit the image column {column!r}: "
                          "images need [channels, height, width] with 1, 3 or 4 channels, "
                          "e.g. [1, 28, 28]")


def _gather(flat: np.ndarray, starts: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Rows ``rows`` of ``size`` values each, starting at ``starts``, as one [m, size] block."""
    if rows.size and rows.size * size == flat.size and starts[rows[0]] == 0 and \
            np.all(np.diff(starts[rows]) == size):
        return flat.reshape(rows.size, size)  # the common case: contiguous, no copy
    return flat[starts[rows][:, None] + np.arange(size)]


def _binary_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [n+1] from 0, uint8 values) of a binary array, without per-row objects."""
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], np.int32)[array.offset: array.offset + len(array) + 1]
    offsets = offsets.astype(np.int64)
    values = (np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None
              else np.empty(0, np.uint8))
    return offsets - offsets[0], values[offsets[0]: offsets[-1]]


def _ints(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _to_chw(pixels: np.ndarray, *, bgr: bool) -> np.ndarray:
    if bgr and pixels.shape[-1] >= 3:
        # Spark's image source stores OpenCV order (BGR/BGRA); networks expect RGB.
        order = [2, 1, 0, 3][: pixels.shape[-1]]
        pixels = pixels[..., order]
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def decode_labels(column: pa.Array, num_classes: int, report: Report, *,
                  where: Where = Where(), width: int = 0,
                  binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(labels, bool mask of valid labels); bad ones counted in ``report``.

    ``width`` 0: int64 class indices ``[n]`` in [0, num_classes); else float32 targets
    ``[n, width]`` from a number (width 1) or a list column, finite, and 0 or 1 if ``binary``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if (~valid).any():
        report.add("null_labels", int((~valid).sum()), where.row(int(np.flatnonzero(~valid)[0])))
    if width:
        return _decode_targets(column, report, valid, where, width=width, binary=binary)
    values = np.asarray(column.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False))
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values) & (values == np.floor(values)) & (values >= 0) & \
            (values < num_classes)
    bad = valid & ~good
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        report.add("bad_label", int(bad.sum()),
                   f"{where.row(first)} has label {float(values[first])!r}")
    labels = np.where(good, values, 0).astype(np.int64)
    return labels, valid & good


def _decode_targets(column: pa.Array, report: Report, valid: np.ndarray, where: Where, *,
                    width: int, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        block, shaped = _decode_numeric_rows(column, width, valid)
        if (valid & ~shaped).any():
            first = int(np.flatnonzero(valid & ~shaped)[0])
            report.add("wrong_label_width", int((valid & ~shaped).sum()),
                       f"{where.row(first)} does not have {width} values")
        valid = valid & shaped
    else:
        values = column.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False)
        block = np.asarray(values, np.float64).reshape(-1, 1)
        if width != 1:
            report.add("wrong_label_width", int(valid.sum()),
                       f"{where.row(0)} has one value, not {width}")
            valid = np.zeros_like(valid)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(block).all(axis=1)
        if binary:
            good &= ((block == 0) | (block == 1)).all(axis=1)
    bad = valid & ~good
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        kind = "bad_binary_label" if binary else "bad_target"
        report.add(kind, int(bad.sum()),
                   f"{where.row(first)} has label {block[first].tolist()!r}")
    valid = valid & good
    return np.where(valid[:, None], block, 0).astype(np.float32), valid


def _decode_numeric_rows(column: pa.Array, width: int, valid: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A list column -> (float64 ``[n, width]``, mask of rows with exactly ``width`` values)."""
    offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    shaped = np.diff(offsets) == width
    values = column.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    flat = np.asarray(values.cast(pa.float64()).fill_null(np.nan)
                      .to_numpy(zero_copy_only=False), np.float64)
    block = np.full((len(column), width), np.nan)
    rows = np.flatnonzero(shaped & valid)
    if rows.size:
        block[rows] = flat[(offsets[rows] - offsets[0])[:, None] + np.arange(width)]
    return block, shaped


# ---------------------------------------------------------------------------------------------
# Spark shell: DataFrame -> one cached Shard per partition


@dataclass(frozen=True, kw_only=True)
class ChunkPlan:
    layout: FeatureLayout
    num_classes: int
    chunk_rows: int
    label_width: int = 0
    binary_targets: bool = False
    num_shards: int = 1
    offsets: tuple[int, ...] = (0,)  # rows before each input partition


def convert_partition(plan: ChunkPlan, batches: Iterator[pa.RecordBatch]
                       ) -> Iterator[pa.RecordBatch]:
    """Runs on executors: Arrow batches -> chunks of compact bytes plus a problem report."""
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    seen = 0
    dtype = storage_dtype(plan.layout.kind)
    for batch in batches:
        report = Report()
        where = Where(f"input partition {partition}, ", seen)
        feats, fmask = decode_features(batch.column(0), plan.layout, report, where=where)
        labels, lmask = decode_labels(batch.column(1), plan.num_classes, report, where=where,
                                      width=plan.label_width, binary=plan.binary_targets)
        first = first_row(plan, partition, seen)
        seen += batch.num_rows
        keep = fmask & lmask
        kept_feats = feats[keep[fmask]].astype(dtype, copy=False)
        kept_labels = labels[keep]

        def payload(rows: np.ndarray, feats: np.ndarray = kept_feats,
                    labels: np.ndarray = kept_labels) -> tuple[bytes, bytes]:
            return (np.ascontiguousarray(feats[rows]).tobytes(),
                    np.ascontiguousarray(labels[rows]).tobytes())

        yield dealt_batch(plan, first, np.flatnonzero(keep), report, payload)


def first_row(plan: ChunkPlan, partition: int, seen: int) -> int:
    """The input row number (over every input partition) of a partition's row ``seen``.

    A partition the count did not see has no rows (a filter can empty any partition)."""
    return (plan.offsets[partition] if partition < len(plan.offsets) else 0) + seen


def dealt_batch(plan: ChunkPlan, first: int, kept: np.ndarray, report: Report,
                payload: Callable[[np.ndarray], tuple[bytes, bytes]]) -> pa.RecordBatch:
    """One input batch's usable rows -> chunks (``CHUNKS``) naming the shard each goes to.

    ``kept``: positions in the batch of the usable rows, whose input row numbers start at
    ``first``. Row g of the input goes to shard g % K: shards differ by at most one row,
    every shard sees every input partition (sorted-by-class data is mixed), and dealing does
    not depend on Arrow batch sizes. ``payload(i)``: the (features, labels) bytes of the
    kept rows ``i`` (indices into ``kept``). The batch's report rides on its first chunk.
    """
    targets = (first + kept) % plan.num_shards
    columns: dict[str, list[Any]] = {name: [] for name in
                                     ("shard", "first", "features", "labels", "rows")}
    for shard in range(plan.num_shards):
        mine = np.flatnonzero(targets == shard)
        for start in range(0, mine.size, plan.chunk_rows):
            rows = mine[start: start + plan.chunk_rows]
            feats, labels = payload(rows)
            for name, value in (("shard", shard), ("first", int(first + kept[rows[0]])),
                                ("features", feats), ("labels", labels),
                                ("rows", int(rows.size))):
                columns[name].append(value)
    if not columns["rows"]:  # nothing usable: one empty chunk still carries the report
        for name, value in (("shard", 0), ("first", first), ("features", b""),
                            ("labels", b""), ("rows", 0)):
            columns[name].append(value)
    reports = [report.to_json()] + [""] * (len(columns["rows"]) - 1)
    return pa.RecordBatch.from_arrays(
        [pa.array(columns["shard"], pa.int32()), pa.array(columns["first"], pa.int64()),
         pa.array(columns["features"], pa.binary()), pa.array(columns["labels"], pa.binary()),
         pa.array(columns["rows"], pa.int64()), pa.array(reports, pa.string())],
        names=["shard", "first", "features", "labels", "rows", "report"])


def _assemble(layout: FeatureLayout, rows: Iterable[Any], label_width: int = 0
              ) -> Iterator[tuple[Shard, str]]:
    """All chunks of one partition -> one Shard and the merged report."""
    dtype = storage_dtype(layout.kind)
    feats, labels, report = [], [], Report()
    for row in sorted(rows, key=lambda row: row.first):  # input order, whatever the shuffle's
        if row.report:
            report.merge(Report.from_json(row.report))
        if row.rows:
            feats.append(np.frombuffer(row.features, dtype).reshape(-1, *layout.shape))
            labels.append(labels_from_bytes(row.labels, label_width))
    empty = np.empty((0,) if label_width == 0 else (0, label_width), label_dtype(label_width))
    shard = Shard(np.concatenate(feats) if feats else np.empty((0, *layout.shape), dtype),
                  np.concatenate(labels) if labels else empty)
    yield shard, report.to_json()


@dataclass(frozen=True, kw_only=True)
class FrameSummary:
    """What the conversion saw: usable rows per shard and the rows skipped (bad images)."""

    shard_sizes: tuple[int, ...]
    skipped_images: int
    skipped_example: str | None


def dataframe_data(df: DataFrame, *, features: str, label: str, spec: InputSpec,
                   num_workers: int, batch_size: int, invalid_images: InvalidImages = "error",
                   kind: FeatureKind | None = None, streamed: bool = False,
                   decode_threads: int = 2, origin: str | None = None
                   ) -> tuple[SparkData, FrameSummary]:
    """Validates ``df`` and caches it as ``num_workers`` shards; raises DataError on bad rows.

    ``kind`` is the feature kind when the caller has already checked the columns. Jobs: one
    ``count``, a tiny one for the partition keys (``dealt_chunks``) and one conversion pass
    (which fills Spark's cache). Nothing here trains; every error is raised before the first
    training round.

    ``streamed`` writes each shard to a file on its executor instead
    (``sparknet.data.streamed``): the same rows in the same order, so training gives the same
    weights, with PNG/JPEG bytes kept encoded until a batch needs them (decoded by
    ``decode_threads`` threads, resized under ``sparknet.data.images``' policy). ``origin``
    names a column (e.g. the file path) that error messages quote for a bad row.
    """
    if kind is None:
        kind = check_columns(df, features=features, label=label)
        check_image_shape(kind, spec.shape, column=features)
    if invalid_images not in ("error", "skip"):
        raise ConfigError(f"invalidImages={invalid_images!r} is invalid: use 'error' or 'skip'")
    selected = df.select(feature_expr(features, kind).alias("features"),
                         label_expr(label, df.schema[label].dataType).alias("label"),
                         *([df[origin].cast("string").alias("origin")] if origin else []))
    offsets = _partition_offsets(selected)
    total = offsets[-1]
    if total == 0:
        raise DataError(f"the DataFrame is empty: there is nothing to train on in columns "
                        f"{features!r}/{label!r}; check the filter or the path it was read from")
    if total < num_workers * batch_size:
        raise DataError(f"the DataFrame has {total} rows, fewer than numWorkers x batchSize = "
                        f"{num_workers} x {batch_size} = {num_workers * batch_size}: use fewer "
                        "workers, a smaller batch size, or more data")
    layout = FeatureLayout(kind=kind, shape=spec.shape)
    plan = ChunkPlan(layout=layout, num_classes=spec.num_classes,
                     chunk_rows=max(1, min(_MAX_CHUNK_ROWS, total // (4 * num_workers))),
                     label_width=spec.label_width, binary_targets=spec.binary_targets,
                     num_shards=num_workers, offsets=offsets[:-1])
    if streamed:
        from sparknet.data.streamed_frames import streamed_frame_data

        if is_connect(df.sparkSession):
            raise ConfigError("streamed shards need a classic Spark session (they live in the "
                              "executors' local folders); on Spark Connect train in memory")
        return streamed_frame_data(selected, plan, spec=spec, num_workers=num_workers,
                                   decode_threads=decode_threads,
                                   check=lambda stats: _check_reports(
                                       stats, features=features, label=label, spec=spec,
                                       invalid_images=invalid_images))
    if is_connect(df.sparkSession):
        return _frame_data(selected, plan, spec=spec, num_workers=num_workers,
                           features=features, label=label, invalid_images=invalid_images)
    pairs = _converted_pairs(selected, plan, num_workers).cache()
    try:
        stats = pairs.map(lambda pair: (len(pair[0]), pair[1])).collect()
        summary = _check_reports(stats, features=features, label=label, spec=spec,
                                 invalid_images=invalid_images)
    except BaseException:
        pairs.unpersist()
        raise
    shards: RDD[Shard] = pairs.map(lambda pair: pair[0])
    sc = df.sparkSession.sparkContext
    train = _PairCachedShards(handles=sc.parallelize(range(num_workers), num_workers),
                              cached=shards, parent=pairs)
    return SparkData(train=train, test=None, spec=spec, train_sizes=summary.shard_sizes,
                     test_size=0), summary


def _partition_offsets(selected: DataFrame) -> tuple[int, ...]:
    """Rows before each input partition, and the total last: one aggregation job."""
    from pyspark.sql import functions as F

    counts = {int(row.partition): int(row["count"]) for row in
              selected.groupBy(F.spark_partition_id().alias("partition")).count().collect()}
    sizes = [counts.get(p, 0) for p in range(max(counts, default=-1) + 1)]
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))


def _frame_data(selected: DataFrame, plan: ChunkPlan, *, spec: InputSpec, num_workers: int,
                features: str, label: str, invalid_images: InvalidImages
                ) -> tuple[SparkData, FrameSummary]:
    """The same chunks as ``_converted_pairs``, kept as a cached DataFrame (Spark Connect).

    Chunks are dealt and ordered as on a classic session (``dealt_chunks``), so the shards
    (and the trained weights) are the same.
    """
    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return convert_partition(plan, batches)

    frame = dealt_chunks(selected, convert, num_workers).cache()
    try:
        table = frame.select("shard", "rows", "report").toArrow()
        per_shard: list[tuple[int, Report]] = [(0, Report()) for _ in range(num_workers)]
        for shard, rows, report in zip(*(table.column(c).to_pylist()
                                         for c in ("shard", "rows", "report")), strict=True):
            per_shard[shard][1].merge(Report.from_json(report))
            per_shard[shard] = (per_shard[shard][0] + rows, per_shard[shard][1])
        summary = _check_reports([(n, r.to_json()) for n, r in per_shard], features=features,
                                 label=label, spec=spec, invalid_images=invalid_images)
    except BaseException:
        frame.unpersist()
        raise
    shards = FrameShards(frame=frame, num_shards=num_workers,
                         layout=ShardLayout(str(storage_dtype(plan.layout.kind)), spec.shape,
                                            label_width=spec.label_width))
    return SparkData(train=shards, test=None, spec=spec, train_sizes=summary.shard_sizes,
                     test_size=0), summary


def dealt_chunks(selected: DataFrame, convert: Callable[[Iterator[pa.RecordBatch]],
                                                        Iterator[pa.RecordBatch]],
                 num_shards: int) -> DataFrame:
    """The chunks ``convert`` makes (``CHUNKS``), shard i's in partition i in input order.

    ``convert`` names each chunk's shard (``dealt_batch``); a chunk's place depends only on
    the input row numbers it holds, never on its bytes, and each partition is sorted by the
    first of them, because a shuffle on a cluster delivers blocks in arrival order: a shard
    holds the same rows in the same order on every run, retry and recomputation, for every
    way of storing the features.
    """
    keys = _partition_keys(selected.sparkSession, num_shards)

    def keyed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in convert(batches):
            shards = batch.column(0).to_numpy(zero_copy_only=False)
            yield batch.append_column("dest", pa.array(np.asarray(keys)[shards], pa.int64()))

    return (selected.mapInArrow(keyed, f"{CHUNKS}, dest long")
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


@dataclass(frozen=True)
class _PairCachedShards(ShardSet):
    """Shards read from the cached (Shard, report) pairs; releasing frees that cache."""

    parent: RDD[tuple[Shard, str]] | None = None

    def release(self) -> None:
        if self.parent is not None:
            self.parent.unpersist()


def _converted_pairs(selected: DataFrame, plan: ChunkPlan,
                     num_partitions: int) -> RDD[tuple[Shard, str]]:
    layout, label_width = plan.layout, plan.label_width

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return convert_partition(plan, batches)

    def assemble(rows: Iterable[Any]) -> Iterable[tuple[Shard, str]]:
        return _assemble(layout, rows, label_width)

    return dealt_chunks(selected, convert, num_partitions).rdd.mapPartitions(assemble)


_MESSAGES = {
    "null_features": "{n} rows have a null in feature column {f!r} (e.g. {ex}): drop them first, "
                     "e.g. df.dropna(subset=[{f!r}])",
    "null_labels": "{n} rows have a null label in column {l!r} (e.g. {ex}): drop them first, "
                   "e.g. df.dropna(subset=[{l!r}])",
    "wrong_length": "{n} rows of feature column {f!r} do not have {size} values, the product "
                    "of inputShape {shape} (e.g. {ex}): set inputShape to the vectors' shape",
    "non_finite": "{n} rows of feature column {f!r} hold NaN or infinite values (e.g. {ex}): "
                  "drop or impute them (pyspark.ml.feature.Imputer) before training",
    "bad_label": "{n} labels in column {l!r} are not integers in [0, {c}) (e.g. {ex}): index "
                 "labels with StringIndexer, or use a network with more outputs (numClasses)",
    "wrong_label_width": "{n} rows of label column {l!r} do not have {c} values, one per "
                         "network output (e.g. {ex}): give targets as wide as the network's "
                         "output",
    "bad_binary_label": "{n} labels in column {l!r} are not 0 or 1 (e.g. {ex}): the "
                        "objective needs 0/1 targets",
    "bad_target": "{n} targets in column {l!r} are NaN or infinite (e.g. {ex}): drop or impute "
                  "those rows before training",
    "wrong_image": "{n} images in column {f!r} do not match inputShape {shape} "
                   "[channels, height, width] (e.g. {ex}): resize them or fix inputShape",
    "undecodable": "{n} rows of column {f!r} are not decodable PNG/JPEG images (e.g. {ex}): "
                   "fix or drop them, or set invalidImages='skip' to skip and count them",
}


def _check_reports(stats: list[tuple[int, str]], *, features: str, label: str,
                   spec: InputSpec, invalid_images: InvalidImages) -> FrameSummary:
    report = Report()
    for _, text in stats:
        report.merge(Report.from_json(text))
    blocking = [k for k in _MESSAGES if report.counts.get(k) and
                not (k == "undecodable" and invalid_images == "skip")]
    if blocking:
        kind = blocking[0]
        message = _MESSAGES[kind].format(
            n=report.counts[kind], f=features, l=label, ex=report.examples[kind],
            size=math.prod(spec.shape), shape=list(spec.shape), c=spec.num_classes)
        others = [f"{report.counts[k]} {k}" for k in blocking[1:]]
        raise DataError(message + (f" (also: {', '.join(others)})" if others else ""))
    sizes = tuple(size for size, _ in stats)
    if min(sizes) == 0:
        raise DataError(f"after skipping {report.counts.get('undecodable', 0)} undecodable "
                        f"images a shard is empty (rows per shard: {list(sizes)}): use fewer "
                        "workers or fix the images")
    return FrameSummary(shard_sizes=sizes, skipped_images=report.counts.get("undecodable", 0),
                        skipped_example=report.examples.get("undecodable"))
