"""One round and one evaluation as ordinary (non-barrier) Spark jobs.

Only plain data crosses to executors: the broadcast state, a ``LocalPlan`` and a
``ModelSource``. Each Python worker builds the network once and caches it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from sparknet.data.shards import InputSpec, Shard
from sparknet.data.sources import ShardSet
from sparknet.engine.aggregate import combine_in_order
from sparknet.engine.local_steps import (
    LocalPlan,
    RoundState,
    WorkerResult,
    evaluate_shard,
    run_local_steps,
)
from sparknet.errors import TrainingError
from sparknet.flat import FlatLayout
from sparknet.models.registry import ModelSource

if TYPE_CHECKING:
    from pyspark import RDD, Broadcast

_MODEL_CACHE: dict[str, tuple[nn.Module, FlatLayout]] = {}


def cached_model(source: ModelSource) -> tuple[nn.Module, FlatLayout]:
    """The network for ``source``, built once per Python worker process."""
    if source.key not in _MODEL_CACHE:
        module = source.build()
        _MODEL_CACHE[source.key] = (module, FlatLayout.of(module))
    return _MODEL_CACHE[source.key]


def task_device(preference: str) -> torch.device:
    """The device for this task: the GPU Spark assigned to it, if asked for and present."""
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        from pyspark import TaskContext

        context = TaskContext.get()
        gpus = context.resources().get("gpu") if context is not None else None
        if gpus is not None and gpus.addresses:
            return torch.device(f"cuda:{gpus.addresses[0]}")
        return torch.device("cuda")
    if preference == "cuda":
        raise TrainingError("device 'cuda' was asked for but this executor has no CUDA device: "
                            "use --device auto or cpu, or give executors GPUs")
    return torch.device("cpu")


def warm_up(shards: ShardSet, source: ModelSource, *, test: ShardSet | None = None) -> None:
    """Starts the Python workers, loads their shards and builds their networks: one job.

    These are one-off costs of a run (like launching processes for DDP); paying them before
    the first round keeps them out of round timings, and so out of the auto-tau measurements.
    """

    def prepare(index: int, shard: Shard) -> int:
        cached_model(source)
        return len(shard)

    shards.map_shards(prepare).collect()
    if test is not None:
        test.map_shards(prepare).collect()


def train_round(shards: ShardSet, state: Broadcast[RoundState], plan: LocalPlan,
                source: ModelSource, *, device: str, fan_in: int) -> WorkerResult:
    """Runs tau local steps on every partition and returns the ordered sum of the results."""

    def train_shard(index: int, shard: Shard) -> tuple[int, WorkerResult]:
        model, layout = cached_model(source)
        return index, run_local_steps(model, layout, shard, state.value, plan, partition=index,
                                      device=task_device(device))

    results = shards.map_shards(train_shard)
    return tree_sum(results, num_partitions=shards.num_shards, fan_in=fan_in)


def tree_sum(indexed: RDD[tuple[int, WorkerResult]], *, num_partitions: int,
             fan_in: int) -> WorkerResult:
    """Sums results in partition order; the driver receives at most ``fan_in`` of them.

    Above ``fan_in`` partitions, groups of ``fan_in`` consecutive partitions are summed on the
    executors first (level by level), each group in index order so the sum is reproducible.
    """
    level, count = indexed, num_partitions
    while count > fan_in:
        groups = math.ceil(count / fan_in)
        level = (level.map(lambda item: (item[0] // fan_in, item))
                 .groupByKey(groups, partitionFunc=lambda key: key)
                 .map(lambda group: (group[0], combine_in_order(group[1]))))
        count = groups
    return combine_in_order(level.collect())


def evaluate(shards: ShardSet, state: Broadcast[RoundState], spec: InputSpec,
             source: ModelSource, *, device: str, batch_size: int,
             threads: int) -> tuple[float, float, int]:
    """(mean loss, top-1 accuracy, examples) over the test set, in eval mode, distributed."""

    def evaluate_one(index: int, shard: Shard) -> tuple[float, int, int]:
        model, layout = cached_model(source)
        return evaluate_shard(model, layout, shard, state.value, spec, batch_size=batch_size,
                              device=task_device(device), threads=threads)

    parts = shards.map_shards(evaluate_one).collect()
    loss = sum(p[0] for p in parts)
    correct = sum(p[1] for p in parts)
    total = sum(p[2] for p in parts)
    return loss / total, correct / total, total
