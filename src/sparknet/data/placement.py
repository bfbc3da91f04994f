"""Placements: how K shards get onto the cluster, how a task reads its shard, and which runner
drives them.

A ``Placement`` places shards once, from driver arrays (``place_shards``) or from a DataFrame
of chunks (``place_chunks``, the format of ``sparknet.data.chunks``), and returns
``PlacedShards`` that name their runner (``runner``: ``rdd`` for RDD jobs, ``frame`` for
DataFrame jobs) and read a shard inside a task. The placements live in
``sparknet.data.placements``: ``memory`` (broadcasts or a cached RDD), ``frames`` (a cached
DataFrame of chunks, for Spark Connect) and ``streamed`` (a file per shard on its executor).
A new one (a Delta table, a Petastorm-style store) is one new module there.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from sparknet.data.chunks import ChunkLayout
from sparknet.data.shards import InputSpec, Shard
from sparknet.errors import DataError

if TYPE_CHECKING:
    from pyspark import Broadcast, SparkContext
    from pyspark.sql import DataFrame, SparkSession

RunnerName = Literal["rdd", "frame"]
T = TypeVar("T")
ShardStats = list[tuple[int, str]]  # per shard, in shard order: (rows, merged report JSON)


class PlacedShards(Protocol):
    """K shards on Spark, read by the runner they name."""

    @property
    def runner(self) -> RunnerName: ...

    @property
    def num_shards(self) -> int: ...

    def release(self) -> None:
        """Frees the shards on the executors (broadcast blocks, cached partitions, files)."""
        ...


class Placement(Protocol):
    """How shards get onto the cluster (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def keeps_encoded(self) -> bool:
        """Whether shards may hold PNG/JPEG bytes still encoded (decoded per batch)."""
        ...

    def place_shards(self, spark: SparkSession | SparkContext, shards: list[Shard],
                     layout: ChunkLayout) -> PlacedShards:
        """Driver arrays, one ``Shard`` per worker, sent once."""
        ...

    def place_chunks(self, chunks: DataFrame, layout: ChunkLayout, num_shards: int
                     ) -> tuple[PlacedShards, ShardStats]:
        """A DataFrame of chunks whose partition i holds shard i's chunks; runs the one job
        that converts and places them, and returns what each shard holds."""
        ...


@dataclass(frozen=True)
class SparkData:
    """Training (and optional test) shards on Spark plus how to turn features into input."""

    train: PlacedShards
    test: PlacedShards | None
    spec: InputSpec
    train_sizes: tuple[int, ...]
    test_size: int

    @property
    def num_workers(self) -> int:
        return len(self.train_sizes)

    def release(self) -> None:
        """Frees the shards on the executors (broadcast blocks, cached partitions, files)."""
        self.train.release()
        if self.test is not None:
            self.test.release()


def is_connect(spark: Any) -> bool:
    """Whether ``spark`` is a Spark Connect session (which has no SparkContext)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def spark_context(spark: Any) -> SparkContext:
    """The SparkContext of a classic session (or the context itself)."""
    return spark.sparkContext if hasattr(spark, "sparkContext") else spark


def broadcast(sc: SparkContext, value: T) -> Broadcast[T]:
    """``sc.broadcast(value)``; a full disk under Spark's local directory is one line.

    PySpark pickles a broadcast into a file in the driver's ``spark.local.dir`` and, when
    that write fails, prints the traceback itself before raising; here that print is kept
    off the terminal and the failure names the folder and the fix.
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            return sc.broadcast(value)
    except Exception as exc:
        if "No space left on device" not in str(exc) and \
                "No space left on device" not in printed.getvalue():
            sys.stderr.write(printed.getvalue())
            raise
        temp_dir = getattr(sc, "_temp_dir", None)  # LOCAL_DIR/spark-UUID/pyspark-UUID
        folder = Path(temp_dir).parents[1] if temp_dir else "spark.local.dir"
        raise DataError(f"Spark's local directory {folder} is full (No space left on device) "
                        "while writing a broadcast of the data or the weights: free space there, "
                        "or point spark.local.dir (SPARK_LOCAL_DIRS) at a larger disk") from None
