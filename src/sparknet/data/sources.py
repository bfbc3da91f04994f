"""Training data placed on Spark as K shards, one per worker, sent to executors only once.

Three placements:

- ``broadcast`` (data that starts on the driver: Fashion-MNIST, NumPy arrays): each shard is a
  Spark broadcast variable. A Python worker loads a shard the first time a task uses it and
  keeps it across rounds, so a round's job carries no training data at all. A lost executor's
  replacement fetches the broadcast blocks again from the driver.
- ``rdd`` (data that starts in a DataFrame): a cached RDD with one shard per partition. Each
  round reads the partition from Spark's cache; a lost partition is recomputed from lineage.
- ``frame`` (any data on a Spark Connect session, which has no SparkContext): a cached
  DataFrame of shard chunks (``sparknet.data.frames``), read by ``mapInArrow`` each round.

``from_arrays`` and ``fashion_mnist_data`` take a SparkSession (classic or Connect) or a
SparkContext and choose the placement from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from sparknet.data import fashion_mnist
from sparknet.data.shards import InputSpec, Shard, contiguous_shards, split_into_shards
from sparknet.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from pyspark import RDD, Broadcast, SparkContext
    from pyspark.sql import SparkSession

    from sparknet.data.frames import FrameShards

T = TypeVar("T")


@dataclass(frozen=True)
class ShardSet:
    """K shards on Spark; ``map_shards`` runs a function on each as one task per shard."""

    handles: RDD[int]
    broadcasts: tuple[Broadcast[Shard], ...] | None = None
    cached: RDD[Shard] | None = None

    @property
    def context(self) -> SparkContext:
        return self.handles.context

    @property
    def num_shards(self) -> int:
        return self.handles.getNumPartitions()

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
        for broadcast in self.broadcasts or ():
            broadcast.destroy()
        if self.cached is not None:
            self.cached.unpersist()


def broadcast_shards(sc: SparkContext, shards: list[Shard]) -> ShardSet:
    return ShardSet(handles=sc.parallelize(range(len(shards)), len(shards)),
                    broadcasts=tuple(sc.broadcast(shard) for shard in shards))


def cached_shards(rdd: RDD[Shard]) -> ShardSet:
    """Wraps an RDD holding exactly one shard per partition; caches it on the executors."""
    sc = rdd.context
    count = rdd.getNumPartitions()
    return ShardSet(handles=sc.parallelize(range(count), count), cached=rdd.cache())


@dataclass(frozen=True)
class SparkData:
    """Training (and optional test) shards on Spark plus how to turn features into input."""

    train: ShardSet | FrameShards
    test: ShardSet | FrameShards | None
    spec: InputSpec
    train_sizes: tuple[int, ...]
    test_size: int

    @property
    def num_workers(self) -> int:
        return len(self.train_sizes)

    def release(self) -> None:
        """Frees the shards on the executors (broadcast blocks, cached partitions)."""
        self.train.release()
        if self.test is not None:
            self.test.release()


def from_arrays(spark: SparkSession | SparkContext, *, train: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray] | None, spec: InputSpec, num_workers: int,
                seed: int, streamed: bool = False, decode_threads: int = 2) -> SparkData:
    """Shuffles the training arrays into ``num_workers`` shards and sends them once.

    ``streamed`` writes each shard to a file on its executor (``sparknet.data.streamed``)
    instead of a broadcast: the same shards, so the same weights, read a batch at a time.
    """
    train_shards = split_into_shards(*train, num_workers, seed=seed)
    test_shards = contiguous_shards(*test, num_workers) if test is not None else None
    place = _placement(spark, streamed=streamed, decode_threads=decode_threads)
    return SparkData(train=place(train_shards),
                     test=place(test_shards) if test_shards is not None else None, spec=spec,
                     train_sizes=tuple(len(s) for s in train_shards),
                     test_size=int(test[1].shape[0]) if test is not None else 0)


def _placement(spark: SparkSession | SparkContext, *, streamed: bool = False,
               decode_threads: int = 2) -> Callable[[list[Shard]], Any]:
    from sparknet.data.frames import frame_shards, is_connect

    if is_connect(spark):
        if streamed:
            raise ConfigError("streamed shards need a classic Spark session (they live in the "
                              "executors' local folders); on Spark Connect train in memory")
        return lambda shards: frame_shards(spark, shards)  # type: ignore[arg-type]
    sc = spark.sparkContext if hasattr(spark, "sparkContext") else spark
    if streamed:
        from sparknet.data.streamed_frames import streamed_arrays

        return lambda shards: streamed_arrays(sc, shards, decode_threads=decode_threads)
    return lambda shards: broadcast_shards(sc, shards)


def fashion_mnist_data(sc: SparkSession | SparkContext, *, num_workers: int, seed: int,
                       data_dir: str | Path = fashion_mnist.DEFAULT_DIR,
                       train_limit: int | None = None, test_limit: int | None = None,
                       streamed: bool = False, decode_threads: int = 2) -> SparkData:
    """Fashion-MNIST as uint8 shards (scaled by 1/255 in the workers); ``streamed``: as
    shard files on the executors (``sparknet.data.streamed``)."""
    train = fashion_mnist.load_split("train", data_dir)
    test = fashion_mnist.load_split("test", data_dir)
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    return from_arrays(sc, train=(train.images[:train_limit], train.labels[:train_limit]),
                       test=(test.images[:test_limit], test.labels[:test_limit]), spec=spec,
                       num_workers=num_workers, seed=seed, streamed=streamed,
                       decode_threads=decode_threads)
