"""Feature and label columns: the table of column kinds, schema checks, and Arrow -> NumPy.

Every way a DataFrame column can hold features is one entry of ``KINDS`` (a ``ColumnKind``):
the Spark types it accepts, the expression that hands it to Arrow, how shards store its rows
in memory and in files, its default input scale, and its Arrow decoder. Training
(``sparknet.data.convert``), streaming and scoring (``sparknet.ml.scoring``) all read the
table; a new kind is one new entry here.

The decoders are pure functions from Arrow arrays to NumPy that also count what is wrong with
the rows (nulls, lengths, NaN, labels, image bytes) in a ``Report``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from sparknet.data.chunks import StoredKind
from sparknet.data.shards import LabelForm
from sparknet.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

FeatureKind = Literal["vector", "array", "binary", "image"]
IMAGE_FIELDS = ("origin", "height", "width", "nChannels", "mode", "data")
_NUMERIC = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType")


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
    return KINDS[layout.kind].decode(column, layout, report, valid, where)


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
    if KINDS[kind].image and (len(shape) != 3 or shape[0] not in (1, 3, 4)):
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


def decode_weights(column: pa.Array, report: Report, *, where: Where = Where()
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(float32 row weights, bool mask of usable ones): finite and >= 0; a null, NaN,
    infinite or negative weight is counted in ``report`` as ``bad_weight``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(column.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False))
    with np.errstate(invalid="ignore"):
        good = valid & np.isfinite(values) & (values >= 0)
    if (~good).any():
        first = int(np.flatnonzero(~good)[0])
        shown = "null" if not valid[first] else repr(float(values[first]))
        report.add("bad_weight", int((~good).sum()), f"{where.row(first)} has weight {shown}")
    return np.where(good, values, 0).astype(np.float32), good


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


# ---------------------------------------------------------------------------------------------
# Schema (no Spark job)


def feature_kind(data_type: DataType, *, column: str) -> FeatureKind:
    """How a feature column is stored; a DataError names the column and the accepted types."""
    for kind in KINDS.values():
        if kind.accepts(data_type):
            return kind.name
    *others, last = [kind.described for kind in KINDS.values()]
    raise DataError(f"feature column {column!r} has type {data_type.simpleString()}, which "
                    f"sparknet cannot read: use {', '.join(others)}, or {last}")


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


def check_weight_column(df: DataFrame, weight: str) -> None:
    """The row-weight column exists and holds one number per row (one line if not)."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    if weight not in fields:
        raise DataError(f"weight column {weight!r} is not in the DataFrame (columns: "
                        f"{sorted(fields)}): set weightCol to one of them, or leave it unset")
    if type(fields[weight]).__name__ not in _NUMERIC:
        raise DataError(f"weight column {weight!r} has type {fields[weight].simpleString()}: "
                        "row weights are one number per row (cast the column to double)")


def label_is_vector(data_type: DataType) -> bool:
    """Whether a label column holds vectors or arrays (else one number per row)."""
    return _is_vector(data_type) or _is_numeric_array(data_type)


def label_form(data_type: DataType) -> LabelForm | None:
    """How a label column holds one row's label (None: as nothing sparknet reads)."""
    if label_is_vector(data_type):
        return "vector"
    return "number" if type(data_type).__name__ in _NUMERIC else None


def label_expr(column: str, data_type: DataType) -> Column:
    """The label column as Arrow will see it: double, or array<float> for vector targets."""
    from pyspark.sql import functions as F

    if label_is_vector(data_type):
        return feature_expr(column, "vector" if _is_vector(data_type) else "array")
    return F.col(column).cast("double")


def feature_expr(column: str, kind: FeatureKind) -> Column:
    """The column as Arrow will see it (vectors become array<float> in the JVM)."""
    return KINDS[kind].expression(column)


def storage_dtype(kind: FeatureKind) -> np.dtype[Any]:
    """Images stay uint8 (4x smaller shards); numeric features are float32."""
    return np.dtype(np.float32) if KINDS[kind].stored == "floats" else np.dtype(np.uint8)


def default_scale(kind: FeatureKind) -> float:
    return KINDS[kind].scale


# ---------------------------------------------------------------------------------------------
# The table of column kinds


def _is_vector(data_type: DataType) -> bool:
    from pyspark.ml.linalg import VectorUDT

    return isinstance(data_type, VectorUDT)


def _is_numeric_array(data_type: DataType) -> bool:
    from pyspark.sql.types import ArrayType

    return isinstance(data_type, ArrayType) and \
        type(data_type.elementType).__name__ in _NUMERIC


def _is_binary(data_type: DataType) -> bool:
    from pyspark.sql.types import BinaryType

    return isinstance(data_type, BinaryType)


def _is_image_struct(data_type: DataType) -> bool:
    from pyspark.sql.types import StructType

    return isinstance(data_type, StructType) and set(IMAGE_FIELDS) <= set(data_type.fieldNames())


def _vector_values(column: str) -> Column:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    # vector_to_array fails on a null vector: a null row stays null (counted, or scored null).
    return F.when(F.col(column).isNotNull(), vector_to_array(F.col(column), "float32"))


def _float_array(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(column).cast("array<float>")


def _as_is(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(column)


def _image_struct(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.struct(*[F.col(f"{column}.{name}").alias(name) for name in IMAGE_FIELDS])


Decoder = Callable[[pa.Array, FeatureLayout, Report, np.ndarray, Where],
                   tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ColumnKind:
    """One way a DataFrame column holds features (module-level functions: picklable)."""

    name: FeatureKind
    described: str  # for the error that lists what sparknet reads
    accepts: Callable[[DataType], bool]
    expression: Callable[[str], Column]  # the column as Arrow will see it
    decode: Decoder  # Arrow -> (features of the usable rows, mask of usable rows)
    stored: StoredKind  # how a shard in memory holds the decoded rows
    streamed: StoredKind  # how a shard file holds them (encoded images stay encoded)
    scale: float  # the default input scale
    image: bool  # the input shape is [channels, height, width]
    sized: bool  # a row's length is known in the JVM (checked there before scoring)


KINDS: dict[str, ColumnKind] = {kind.name: kind for kind in (
    ColumnKind("vector", "an ML Vector", _is_vector, _vector_values,
               _decode_numeric, "floats", "floats", 1.0, False, True),
    ColumnKind("array", "array<float>/array<double>", _is_numeric_array, _float_array,
               _decode_numeric, "floats", "floats", 1.0, False, True),
    ColumnKind("binary", "binary PNG/JPEG bytes", _is_binary, _as_is, _decode_encoded,
               "pixels", "encoded", 1 / 255, True, False),
    ColumnKind("image", "the struct of spark.read.format('image')", _is_image_struct,
               _image_struct, _decode_image_struct, "pixels", "pixels", 1 / 255, True, False),
)}
