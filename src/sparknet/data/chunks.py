"""The one chunk format: how rows travel from an input to a placement, and back to a shard.

A chunk is up to a few thousand consecutive rows of one shard, as one Arrow row:

- ``shard``: the shard (and so the partition) the rows belong to;
- ``first``: the input row number of the chunk's first row; a shard's chunks are kept in this
  order, whatever order a shuffle delivers them in;
- ``features``: the stored rows back to back: fixed-size uint8 (``pixels``) or float32
  (``floats``) rows, or for ``encoded`` images ``rows`` int64 lengths, then the PNG/JPEG bytes;
- ``labels``: int64 class indices, or float32 targets ``[rows, label_width]``;
- ``rows``: the number of rows;
- ``report``: what was wrong with the input batch the chunk came from (JSON, on its first
  chunk only; empty otherwise).

Driver arrays (``shard_chunks``) and DataFrame batches (``dealt_batch``) are encoded here, and
every placement decodes here: to a ``Shard`` in memory (``assemble_shard``) or to per-row bytes
for a shard file (``row_bytes``). Pure: NumPy and Arrow only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from sparknet.data.shards import Shard
from sparknet.errors import ConfigError

StoredKind = Literal["pixels", "floats", "encoded"]
CHUNK_ROWS = 4096  # rows per chunk of driver arrays
CHUNK_SCHEMA = "shard int, first long, features binary, labels binary, rows long, report string"
CHUNK_FIELDS = ("shard", "first", "features", "labels", "rows", "report")
ARROW_CHUNK_SCHEMA = pa.schema([("shard", pa.int32()), ("first", pa.int64()),
                                ("features", pa.binary()), ("labels", pa.binary()),
                                ("rows", pa.int64()), ("report", pa.string())])


@dataclass(frozen=True, kw_only=True)
class ChunkLayout:
    """How a chunk's bytes become rows (plain data that crosses to executors).

    ``shape`` is the per-example shape of the stored features ([channels, height, width] for
    images, which ``encoded`` rows are decoded and, if need be, resized to).
    """

    stored: StoredKind
    shape: tuple[int, ...]
    label_width: int = 0  # 0: int64 class indices; else float32 targets of that width

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of decoded features (encoded images decode to uint8 pixels)."""
        return np.dtype(np.float32) if self.stored == "floats" else np.dtype(np.uint8)

    @property
    def row_bytes(self) -> int:
        """Bytes of one fixed-size stored row (not defined for encoded images)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def label_bytes(self) -> int:
        return 8 if self.label_width == 0 else 4 * self.label_width

    def labels(self, data: bytes | bytearray) -> np.ndarray:
        """Stored label bytes -> int64 class indices ``[n]`` or float32 targets ``[n, width]``.

        A bytearray copy: writable memory, which ``torch.from_numpy`` expects.
        """
        labels = np.frombuffer(bytearray(data), label_dtype(self.label_width))
        return labels if self.label_width == 0 else labels.reshape(-1, self.label_width)

    def label_bytes_of(self, labels: np.ndarray) -> bytes:
        return np.ascontiguousarray(labels, label_dtype(self.label_width)).tobytes()


def label_dtype(label_width: int) -> type[np.generic]:
    return np.int64 if label_width == 0 else np.float32


def layout_of_arrays(features: np.ndarray, labels: np.ndarray) -> ChunkLayout:
    """The layout of driver arrays: uint8 pixels or float32 values; class indices or targets."""
    if features.dtype not in (np.uint8, np.float32):
        raise ConfigError(f"features must be uint8 or float32, not {features.dtype}: convert "
                          "the array first (e.g. features.astype(np.float32))")
    if labels.ndim not in (1, 2):
        raise ConfigError(f"labels must be class indices [n] or targets [n, width], not an "
                          f"array of shape {labels.shape}")
    return ChunkLayout(stored="floats" if features.dtype == np.float32 else "pixels",
                       shape=tuple(int(d) for d in features.shape[1:]),
                       label_width=0 if labels.ndim == 1 else int(labels.shape[1]))


def chunk_batch(columns: dict[str, list[Any]]) -> pa.RecordBatch:
    """Lists of chunk values by field name -> one Arrow batch of chunks."""
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[name], ARROW_CHUNK_SCHEMA.field(name).type) for name in CHUNK_FIELDS],
        schema=ARROW_CHUNK_SCHEMA)


def shard_chunks(index: int, shard: Shard, layout: ChunkLayout, *, chunk_rows: int = CHUNK_ROWS,
                 pad_to: int = 0) -> pa.RecordBatch:
    """Driver arrays: one shard as chunks (``first`` counts from the shard's first row).

    ``pad_to`` adds empty chunks up to that many, so that every shard has as many chunks.
    """
    columns: dict[str, list[Any]] = {name: [] for name in CHUNK_FIELDS}
    for start in range(0, len(shard), chunk_rows):
        features, labels = shard.rows(slice(start, start + chunk_rows))
        _append(columns, index, start, np.ascontiguousarray(features).tobytes(),
                layout.label_bytes_of(labels), int(labels.shape[0]), "")
    while len(columns["rows"]) < max(1, pad_to):
        _append(columns, index, len(shard), b"", b"", 0, "")
    return chunk_batch(columns)


def _append(columns: dict[str, list[Any]], *values: Any) -> None:
    for name, value in zip(CHUNK_FIELDS, values, strict=True):
        columns[name].append(value)


def dealt_batch(*, num_shards: int, chunk_rows: int, first: int, kept: np.ndarray, report: str,
                payload: Callable[[np.ndarray], tuple[bytes, bytes]]) -> pa.RecordBatch:
    """One input batch's usable rows -> chunks naming the shard each goes to.

    ``kept``: positions in the batch of the usable rows, whose input row numbers start at
    ``first``. Row g of the input goes to shard g % K: shards differ by at most one row,
    every shard sees every input partition (sorted-by-class data is mixed), and dealing does
    not depend on Arrow batch sizes. ``payload(i)``: the (features, labels) bytes of the
    kept rows ``i`` (indices into ``kept``). The batch's report rides on its first chunk.
    """
    targets = (first + kept) % num_shards
    columns: dict[str, list[Any]] = {name: [] for name in CHUNK_FIELDS}
    for shard in range(num_shards):
        mine = np.flatnonzero(targets == shard)
        for start in range(0, mine.size, chunk_rows):
            rows = mine[start: start + chunk_rows]
            features, labels = payload(rows)
            _append(columns, shard, int(first + kept[rows[0]]), features, labels,
                    int(rows.size), "")
    if not columns["rows"]:  # nothing usable: one empty chunk still carries the report
        _append(columns, 0, first, b"", b"", 0, "")
    columns["report"][0] = report
    return chunk_batch(columns)


def assemble_shard(layout: ChunkLayout, chunks: Iterable[Any]) -> Shard:
    """A shard's chunks (rows with ``first``, ``features``, ``labels``, ``rows``) -> a Shard,
    in input order. Fixed-size rows only: encoded images are decoded before they are held."""
    if layout.stored == "encoded":
        raise ValueError("encoded chunks are streamed, not assembled in memory")
    features, labels = [], []
    for chunk in sorted(chunks, key=lambda chunk: chunk["first"]):
        if chunk["rows"]:
            features.append(chunk["features"])
            labels.append(chunk["labels"])
    flat = np.frombuffer(bytearray(b"".join(features)), layout.dtype)
    return Shard(flat.reshape(-1, *layout.shape), layout.labels(b"".join(labels)))


def row_bytes(layout: ChunkLayout, features: bytes, labels: bytes, rows: int
              ) -> tuple[list[bytes], list[bytes]]:
    """One chunk -> per-row (stored feature bytes, label bytes), for a shard file."""
    width = layout.label_bytes
    label_rows = [labels[i * width: (i + 1) * width] for i in range(rows)]
    if layout.stored != "encoded":
        size = layout.row_bytes
        return [features[i * size: (i + 1) * size] for i in range(rows)], label_rows
    lengths = np.frombuffer(features[: 8 * rows], np.int64)
    ends = 8 * rows + np.cumsum(lengths)
    starts = ends - lengths
    return [features[int(s): int(e)] for s, e in zip(starts, ends, strict=True)], label_rows


def encoded_payload(blobs: list[bytes]) -> bytes:
    """Encoded images -> a chunk's features: their int64 lengths, then their bytes."""
    lengths = np.array([len(blob) for blob in blobs], np.int64)
    return lengths.tobytes() + b"".join(blobs)
