"""The ``frames`` placement: shards as a cached DataFrame of chunks, read with DataFrame APIs
only, so it needs no SparkContext (Spark Connect; it works on classic sessions too).

Every chunk of shard i lives in partition i. Rounds read it with ``mapInArrow`` (one task per
shard, a narrow scan of Spark's cache), so a lost partition is recomputed from the DataFrame's
lineage like any cached data. A Python worker keeps each shard it assembled
(``map_kept_shards``): later rounds then scan only the shard column, and a worker that holds
no copy says so and the caller reads that shard in full again.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sparknet.data.chunks import ChunkLayout, assemble_shard, shard_chunks
from sparknet.data.columns import Report
from sparknet.data.placement import RunnerName, ShardStats
from sparknet.data.shards import Shard

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class FrameShards:
    """K shards as a cached DataFrame of chunks (see the module docstring)."""

    frame: DataFrame
    num_shards: int
    layout: ChunkLayout
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # names kept copies

    @property
    def runner(self) -> RunnerName:
        return "frame"

    @property
    def session(self) -> SparkSession:
        return self.frame.sparkSession

    def map_shards(self, fn: Callable[[int, Shard], dict[str, Any]], schema: pa.Schema,
                   ddl: str, *, only: tuple[int, ...] | None = None) -> DataFrame:
        """One task per partition; ``fn(index, shard)`` gives one row (``schema``) per shard
        (of the shards ``only`` names, when given). The worker keeps the shards it read."""
        layout, token = self.layout, self.token

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            rows = []
            for index, shard in read_shards(batches, layout):
                kept_shards().put((token, index), shard)
                rows.append(fn(index, shard))
            yield pa.RecordBatch.from_pylist(rows, schema=schema)

        frame = self.frame
        if only is not None:
            from pyspark.sql import functions as F

            frame = frame.where(F.col("shard").isin(list(only)))
        return frame.mapInArrow(task, ddl)

    def map_kept_shards(self, fn: Callable[[int, Shard], dict[str, Any]], schema: pa.Schema,
                        ddl: str, *, unkept: Callable[[int], dict[str, Any]]) -> DataFrame:
        """``map_shards`` over the worker's kept copies, scanning only the shard column; a
        worker holding no copy of shard i gives ``unkept(i)`` (read it with ``map_shards``)."""
        token = self.token

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            indices = sorted({int(i) for batch in batches
                              for i in batch.column("shard").to_pylist()})
            rows = []
            for index in indices:
                shard = kept_shards().get((token, index))
                rows.append(unkept(index) if shard is None else fn(index, shard))
            yield pa.RecordBatch.from_pylist(rows, schema=schema)

        return self.frame.select("shard").mapInArrow(task, ddl)

    def release(self) -> None:
        self.frame.unpersist()


class KeptShards:
    """Shards a Python worker assembled, least recently used first out past ``limit`` bytes:
    as the ``memory`` placement's workers keep the shards they were broadcast."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._shards: OrderedDict[tuple[str, int], Shard] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple[str, int], shard: Shard) -> None:
        with self._lock:
            self._shards[key] = shard
            self._shards.move_to_end(key)
            while sum(_size(s) for s in self._shards.values()) > self.limit and \
                    len(self._shards) > 1:
                self._shards.popitem(last=False)

    def get(self, key: tuple[str, int]) -> Shard | None:
        with self._lock:
            shard = self._shards.get(key)
            if shard is not None:
                self._shards.move_to_end(key)
            return shard


def _size(shard: Shard) -> int:
    return int(shard.features.nbytes + shard.labels.nbytes)


_KEPT = KeptShards(limit=4 * 2**30)


def kept_shards() -> KeptShards:
    """This Python worker's kept shards (a function, so that task closures name the module's
    one instance instead of carrying a copy)."""
    return _KEPT


def read_shards(batches: Iterable[pa.RecordBatch], layout: ChunkLayout
                ) -> Iterator[tuple[int, Shard]]:
    """Runs in a task: the chunks of each shard in this partition -> (index, Shard)."""
    parts: dict[int, list[dict[str, Any]]] = {}
    for batch in batches:
        for chunk in batch.to_pylist():
            parts.setdefault(int(chunk["shard"]), []).append(chunk)
    for index in sorted(parts):
        yield index, assemble_shard(layout, parts[index])


@dataclass(frozen=True)
class FramePlacement:
    name: str = "frames"
    keeps_encoded: bool = False

    def place_shards(self, spark: SparkSession | SparkContext, shards: list[Shard],
                     layout: ChunkLayout) -> FrameShards:
        """Sends driver arrays to the executors once, as a cached DataFrame of chunks."""
        table = pa.Table.from_batches([shard_chunks(i, s, layout) for i, s in enumerate(shards)])
        frame = (spark.createDataFrame(table)  # type: ignore[union-attr]
                 .repartitionByRange(len(shards), "shard").cache())
        return FrameShards(frame=frame, num_shards=len(shards), layout=layout)

    def place_chunks(self, chunks: DataFrame, layout: ChunkLayout, num_shards: int
                     ) -> tuple[FrameShards, ShardStats]:
        frame = chunks.cache()
        try:
            table = frame.select("shard", "rows", "report").toArrow()
        except BaseException:
            frame.unpersist()
            raise
        per_shard = [(0, Report()) for _ in range(num_shards)]
        for shard, rows, report in zip(*(table.column(c).to_pylist()
                                         for c in ("shard", "rows", "report")), strict=True):
            per_shard[shard][1].merge(Report.from_json(report))
            per_shard[shard] = (per_shard[shard][0] + rows, per_shard[shard][1])
        stats = [(rows, report.to_json()) for rows, report in per_shard]
        return FrameShards(frame=frame, num_shards=num_shards, layout=layout), stats
