"""The ``memory`` placement: shards held by Spark on a classic session, read by RDD jobs.

Driver arrays become one broadcast per shard: a Python worker loads a shard the first time a
task uses it and keeps it across rounds, so a round's job carries no training data; a lost
executor's replacement fetches the blocks again from the driver. A DataFrame's chunks become a
cached RDD with one ``Shard`` per partition; a lost partition is recomputed from lineage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sparknet.data.chunks import ChunkLayout, assemble_shard
from sparknet.data.columns import Report
from sparknet.data.placement import RunnerName, ShardStats, broadcast, spark_context
from sparknet.data.shards import Shard
from sparknet.errors import TrainingError

if TYPE_CHECKING:
    from pyspark import RDD, Broadcast, SparkContext
    from pyspark.sql import DataFrame, SparkSession

T = TypeVar("T")


@dataclass(frozen=True)
class ShardSet:
    """K shards on Spark; ``map_shards`` runs a function on each as one task per shard."""

    handles: RDD[Any]
    broadcasts: tuple[Broadcast[Shard], ...] | None = None
    cached: RDD[Shard] | None = None
    parent: RDD[Any] | None = None  # what ``cached`` was derived from, released with it

    @property
    def runner(self) -> RunnerName:
        return "rdd"

    @property
    def context(self) -> SparkContext:
        return self.handles.context

    @property
    def num_shards(self) -> int:
        return self.handles.getNumPartitions()

    @property
    def on_executor_disk(self) -> bool:
        """Whether each shard lives only on the disk of the executor that wrote it (so a
        task must run there): the streamed placement's files. Spark's blocks travel."""
        return False

    def map_shards(self, fn: Callable[[int, Any], T]) -> RDD[T]:
        if self.broadcasts is not None:
            broadcasts = self.broadcasts

            def from_broadcast(index: int, _: Iterable[int]) -> Iterator[T]:
                yield fn(index, broadcasts[index].value)

            return self.handles.mapPartitionsWithIndex(from_broadcast)
        assert self.cached is not None

        def from_cache(index: int, shards: Iterable[Shard]) -> Iterator[T]:
            found = list(shards)
            if len(found) != 1:
                raise TrainingError(f"partition {index} holds {len(found)} shards, expected 1")
            yield fn(index, found[0])

        return self.cached.mapPartitionsWithIndex(from_cache)

    def release(self) -> None:
        for shared in self.broadcasts or ():
            shared.destroy()
        for rdd in (self.cached, self.parent):
            if rdd is not None:
                rdd.unpersist()


def broadcast_shards(sc: SparkContext, shards: list[Shard]) -> ShardSet:
    return ShardSet(handles=sc.parallelize(range(len(shards)), len(shards)),
                    broadcasts=tuple(broadcast(sc, shard) for shard in shards))


def cached_shards(rdd: RDD[Shard]) -> ShardSet:
    """Wraps an RDD holding exactly one shard per partition; caches it on the executors."""
    sc = rdd.context
    count = rdd.getNumPartitions()
    return ShardSet(handles=sc.parallelize(range(count), count), cached=rdd.cache())


@dataclass(frozen=True)
class MemoryPlacement:
    name: str = "memory"
    keeps_encoded: bool = False

    def place_shards(self, spark: SparkSession | SparkContext, shards: list[Shard],
                     layout: ChunkLayout) -> ShardSet:
        return broadcast_shards(spark_context(spark), shards)

    def place_chunks(self, chunks: DataFrame, layout: ChunkLayout, num_shards: int
                     ) -> tuple[ShardSet, ShardStats]:
        def assemble(rows: Iterable[Any]) -> Iterator[tuple[Shard, str]]:
            rows = list(rows)
            report = Report()
            for row in rows:
                if row["report"]:
                    report.merge(Report.from_json(row["report"]))
            yield assemble_shard(layout, rows), report.to_json()

        pairs = chunks.rdd.mapPartitions(assemble).cache()
        try:
            stats = pairs.map(lambda pair: (len(pair[0]), pair[1])).collect()
        except BaseException:
            pairs.unpersist()
            raise
        sc = chunks.sparkSession.sparkContext
        shards = ShardSet(handles=sc.parallelize(range(num_shards), num_shards),
                          cached=pairs.map(lambda pair: pair[0]), parent=pairs)
        return shards, stats
