"""The ``streamed`` placement: each shard written once to a local Arrow IPC file, read per batch.

For data larger than the executors' memory. The warm-up job writes
partition i's rows, as stored (encoded PNG/JPEG bytes, uint8 pixels or float32 values, plus
int64 class labels or float32 targets), to one Arrow IPC file in the executor's local
directory (Spark's per-executor ``SparkFiles`` folder, removed with the executor) and caches
a one-row marker for it. A round's task finds the marker in Spark's cache on the same
executor, so it finds the file there; when that executor is lost, Spark recomputes the marker
from the DataFrame's lineage on another executor, which writes the file again (same rows, same
order).

Memory a Python worker holds for data (the bound ``docs/streaming.md`` documents): a task reads
just the rows of each mini-batch from its file with ``pread`` (the file's footer and batch
headers are read once per task through a short-lived memory map), so the data it holds is the
mini-batch in flight: stored rows, decoded pixels and the network input. None of it grows with
the number of rows in the file; the file itself stays in the operating system's page cache.

Each file's SHA-256 digest is taken when it is written and kept in its marker; a task checks
the file against it before reading rows, once per Python worker and again whenever the
file's inode, size or modification time changes. A damaged or deleted file stops the round
with one line naming it, never training on whatever bytes are there.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from sparknet.data.chunks import CHUNK_ROWS, ChunkLayout, row_bytes, shard_chunks
from sparknet.data.columns import Report
from sparknet.data.images import ImageDecoder
from sparknet.data.placement import ShardStats, spark_context
from sparknet.data.placements.memory import ShardSet
from sparknet.data.shards import Shard
from sparknet.errors import TrainingError

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext
    from pyspark.sql import DataFrame, SparkSession

T = TypeVar("T")
# A shard file's record batches hold up to this many rows and bytes: the writer holds one.
FILE_BATCH_ROWS = 4096
FILE_BATCH_BYTES = 8 << 20
_FOLDER = "sparknet-stream"


def shard_path(token: str, index: int) -> Path:
    """Where partition ``index`` of the shard set ``token`` lives on this executor."""
    from pyspark import SparkFiles

    return Path(SparkFiles.getRootDirectory()) / _FOLDER / f"{token}-{index}.arrow"


# ---------------------------------------------------------------------------------------------
# Writing (the warm-up job)


def _schema(layout: ChunkLayout) -> pa.Schema:
    features = (pa.binary() if layout.stored == "encoded"
                else pa.binary(layout.row_bytes))  # fixed-size rows: a row's offset is known
    return pa.schema([("features", features), ("labels", pa.binary(layout.label_bytes))])


def write_shard_file(path: Path, layout: ChunkLayout,
                     chunks: Iterable[tuple[bytes, bytes, int]]) -> tuple[int, str]:
    """Writes the rows of ``chunks`` to ``path`` (atomically) in order; returns the row count
    and the file's SHA-256 digest.

    Holds at most one chunk and one record batch of rows in memory.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    schema = _schema(layout)
    pending: list[bytes] = []
    pending_labels: list[bytes] = []
    total = pending_bytes = 0

    def flush(writer: pa.ipc.RecordBatchFileWriter) -> None:
        writer.write_batch(pa.record_batch([pa.array(pending, schema.field(0).type),
                                            pa.array(pending_labels, schema.field(1).type)],
                                           schema=schema))
        pending.clear()
        pending_labels.clear()
        nonlocal pending_bytes
        pending_bytes = 0

    try:
        with pa.OSFile(str(temporary), "wb") as sink, \
                pa.ipc.new_file(sink, schema) as writer:
            for features, labels, rows in chunks:
                stored, label_array = row_bytes(layout, features, labels, rows)
                for row in range(rows):
                    pending.append(stored[row])
                    pending_labels.append(label_array[row])
                    pending_bytes += len(stored[row])
                    if len(pending) == FILE_BATCH_ROWS or pending_bytes >= FILE_BATCH_BYTES:
                        flush(writer)
                total += rows
            if pending:
                flush(writer)
        digest = _digest(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _VERIFIED[str(path)] = _identity(path)
    return total, digest


def _digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


# path -> (inode, size, mtime) of the file when this process last found its digest right
_VERIFIED: dict[str, tuple[int, int, int]] = {}


def check_shard_file(path: Path, digest: str, index: int) -> None:
    """The shard file holds the bytes its writer wrote (one line naming it if not)."""
    try:
        identity = _identity(path)
        if _VERIFIED.get(str(path)) == identity:
            return
        found = _digest(path)
    except FileNotFoundError:
        raise TrainingError(f"streamed shard file {path} (shard {index}) was deleted from its "
                            "executor during the run: its rows are gone; run again or "
                            "--resume (the shard files are written anew)") from None
    except OSError as exc:
        raise TrainingError(f"streamed shard file {path} (shard {index}) cannot be read "
                            f"({exc.strerror or exc}): check the executor's local "
                            "directory") from None
    if found != digest:
        raise TrainingError(f"streamed shard file {path} (shard {index}) does not match the "
                            "SHA-256 digest taken when it was written: it was changed or "
                            "damaged on disk; sparknet does not train on it; run again or "
                            "--resume (the shard files are written anew)")
    _VERIFIED[str(path)] = identity


# ---------------------------------------------------------------------------------------------
# Reading (every round and every evaluation)


@dataclass(frozen=True)
class _Block:
    """Where one record batch's rows lie in the file (byte positions)."""

    first_row: int
    rows: int
    labels_at: int
    features_at: int
    offsets_at: int  # encoded rows: the int32 offsets into the bytes at ``features_at``


def _blocks(path: Path, layout: ChunkLayout) -> list[_Block]:
    """Reads the file's footer and record-batch headers (zero-copy) for the buffers' places."""
    mapped = pa.memory_map(str(path))
    try:
        base = mapped.read_buffer(1).address  # the map's first byte
        reader = pa.ipc.open_file(mapped)
        blocks, first = [], 0
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            column, labels = batch.column(0), batch.column(1)
            buffers = column.buffers()
            label_at = (labels.buffers()[1].address - base +
                        layout.label_bytes * labels.offset)
            if layout.stored == "encoded":
                block = _Block(first, len(column), label_at, buffers[2].address - base,
                               buffers[1].address - base + 4 * column.offset)
            else:
                block = _Block(first, len(column), label_at, buffers[1].address - base +
                               layout.row_bytes * column.offset, -1)
            blocks.append(block)
            first += block.rows
        return blocks
    finally:
        mapped.close()


class StreamedShard:
    """One partition's file, open for the duration of a task; reads rows by index.

    Rows are read with ``pread`` into the batch's own arrays: nothing of the file is mapped
    into the process, so the data a task holds is the batch in flight (see the module
    docstring); the file stays in the page cache. Duck-types ``sparknet.data.shards.Shard`` for
    the worker functions: ``len(shard)`` and ``shard.rows(index) -> (features, labels)``.
    """

    def __init__(self, path: Path, layout: ChunkLayout, *, decode_threads: int = 2) -> None:
        self.layout = layout
        self._blocks = _blocks(path, layout)
        self._starts = np.array([b.first_row for b in self._blocks], np.int64)
        self._length = sum(b.rows for b in self._blocks)
        self._fd = os.open(path, os.O_RDONLY)
        self._decoder = (ImageDecoder(layout.shape, threads=decode_threads)
                         if layout.stored == "encoded" else None)

    def __len__(self) -> int:
        return self._length

    def _read(self, size: int, position: int) -> bytes:
        data = os.pread(self._fd, size, position)
        if len(data) != size:
            raise TrainingError(f"streamed shard file ended early at byte {position}: it was "
                                "changed or truncated while training; start the run again")
        return data

    def rows(self, index: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """(stored features ``[n, *shape]`` decoded to pixels for images, labels)."""
        if isinstance(index, slice):
            return self._run(*index.indices(self._length)[:2])
        index = np.asarray(index, np.int64)
        chunk = np.searchsorted(self._starts, index, side="right") - 1
        labels: list[bytes] = []
        features: list[bytes] = []
        size, width = self.layout.row_bytes, self.layout.label_bytes
        for c, i in zip(chunk.tolist(), index.tolist(), strict=True):
            block = self._blocks[c]
            offset = i - block.first_row
            labels.append(self._read(width, block.labels_at + width * offset))
            if self._decoder is None:
                features.append(self._read(size, block.features_at + size * offset))
            else:
                start, end = np.frombuffer(self._read(8, block.offsets_at + 4 * offset),
                                           np.int32).tolist()
                features.append(self._read(end - start, block.features_at + start))
        return self._stored(features, index.size), self.layout.labels(b"".join(labels))

    def _run(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start..stop`` in order (evaluation): one read per record batch."""
        labels: list[bytes] = []
        features: list[bytes] = []
        size, width = self.layout.row_bytes, self.layout.label_bytes
        for block in self._blocks:
            first = max(start, block.first_row) - block.first_row
            last = min(stop, block.first_row + block.rows) - block.first_row
            if first >= last:
                continue
            labels.append(self._read(width * (last - first), block.labels_at + width * first))
            if self._decoder is None:
                features.append(self._read(size * (last - first),
                                           block.features_at + size * first))
                continue
            ends = np.frombuffer(self._read(4 * (last - first + 1),
                                            block.offsets_at + 4 * first), np.int32)
            data = self._read(int(ends[-1] - ends[0]), block.features_at + int(ends[0]))
            starts = (ends - ends[0]).tolist()
            features += [data[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]
        return self._stored(features, max(0, stop - start)), self.layout.labels(b"".join(labels))

    def _stored(self, parts: list[bytes], count: int) -> np.ndarray:
        if self._decoder is not None:
            return self._decoder.decode(parts)
        # bytearray: writable memory, which torch.from_numpy expects.
        flat = np.frombuffer(bytearray(b"".join(parts)), self.layout.dtype)
        return flat.reshape(count, *self.layout.shape)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True)
class StreamedShards(ShardSet):
    """K shard files on the executors; ``handles`` is the cached marker RDD that wrote them.

    A marker row is ``(index, rows, report, digest, path)``; reading it from Spark's cache is
    what sends a round's task to the executor that holds the file.
    """

    token: str = ""
    layout: ChunkLayout | None = None
    decode_threads: int = 2

    @property
    def on_executor_disk(self) -> bool:
        return True

    def map_shards(self, fn: Callable[[int, Any], T]) -> RDD[T]:
        token, layout, threads = self.token, self.layout, self.decode_threads
        assert layout is not None

        def from_file(index: int, markers: Iterable[Any]) -> Iterator[T]:
            written = None
            for marker in markers:  # the cached marker, read so the lineage stays in force
                written = marker
            path = shard_path(token, index)
            assert written is not None
            if not path.is_file() and written[4] != str(path):
                raise TrainingError(
                    f"streamed shard {index} is not on this executor ({path}): the task ran "
                    "away from the executor holding it; Spark retries it there")
            check_shard_file(path, written[3], index)
            shard = StreamedShard(path, layout, decode_threads=threads)
            try:
                yield fn(index, shard)
            finally:
                shard.close()

        return self.handles.mapPartitionsWithIndex(from_file)

    def release(self) -> None:
        token = self.token

        def remove(index: int, _: Iterable[Any]) -> Iterator[int]:
            shard_path(token, index).unlink(missing_ok=True)
            yield index

        try:
            self.handles.mapPartitionsWithIndex(remove).collect()
        finally:
            self.handles.unpersist()


def stream_chunks(chunks: RDD[Any], layout: ChunkLayout, *, decode_threads: int
                  ) -> StreamedShards:
    """Writes partition i of ``chunks`` to shard file i on its executor; caches the markers.

    ``chunks`` rows are ``(features, labels, rows, report)`` of the chunk format
    (``sparknet.data.chunks``), in order. A marker is ``(index, rows, merged report, the
    file's SHA-256 digest, its path)``: the path tells a task on the executor that wrote the
    file (a deleted file) from one that ran elsewhere (Spark retries it).
    Nothing runs until the first job on the result (the warm-up job).
    """
    token = uuid.uuid4().hex

    def write(index: int, rows: Iterable[Any]) -> Iterator[tuple[int, int, str, str, str]]:
        report = Report()

        def stored() -> Iterator[tuple[bytes, bytes, int]]:
            for row in rows:
                if row[3]:
                    report.merge(Report.from_json(row[3]))
                yield row[0], row[1], row[2]

        path = shard_path(token, index)
        count, digest = write_shard_file(path, layout, stored())
        yield index, count, report.to_json(), digest, str(path)

    marked = chunks.mapPartitionsWithIndex(write).cache()
    return StreamedShards(handles=marked, token=token, layout=layout,
                          decode_threads=decode_threads)


@dataclass(frozen=True)
class StreamedPlacement:
    """Shard files on the executors; encoded images are decoded by ``decode_threads``."""

    decode_threads: int = 2
    name: str = "streamed"
    keeps_encoded: bool = True

    def place_shards(self, spark: SparkSession | SparkContext, shards: list[Shard],
                     layout: ChunkLayout) -> StreamedShards:
        """Driver arrays -> shard files, written by the first job on them.

        Every shard is padded with empty chunks to the same count, so that ``parallelize``
        puts shard i's chunks, in order, in partition i.
        """
        longest = max(-(-len(shard) // CHUNK_ROWS) for shard in shards)
        chunks = [(chunk["features"], chunk["labels"], chunk["rows"], chunk["report"])
                  for index, shard in enumerate(shards)
                  for chunk in shard_chunks(index, shard, layout, pad_to=longest).to_pylist()]
        rdd = spark_context(spark).parallelize(chunks, len(shards))
        return stream_chunks(rdd, layout, decode_threads=self.decode_threads)

    def place_chunks(self, chunks: DataFrame, layout: ChunkLayout, num_shards: int
                     ) -> tuple[StreamedShards, ShardStats]:
        """Converts, deals and writes the shard files in one job."""
        shards = stream_chunks(chunks.drop("shard", "first").rdd, layout,
                               decode_threads=self.decode_threads)
        try:
            stats = shards.handles.map(lambda marker: (marker[1], marker[2])).collect()
        except BaseException:
            shards.release()
            raise
        return shards, stats
