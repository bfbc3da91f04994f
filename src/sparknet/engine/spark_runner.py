"""The Spark runner: each round and each evaluation is one ordinary (non-barrier) Spark job.

Only plain data crosses to executors: the broadcast ``RoundState``, a ``LocalPlan`` and the
model kind. Each Python worker builds the network once (``engine.model_cache``); a task's
result is a pure function of its inputs, so Spark may retry any task anywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from sparknet.data.placement import broadcast
from sparknet.data.shards import ShardRows
from sparknet.engine.aggregate import combine_in_order, tree_group, tree_levels
from sparknet.engine.jobs import OrderedJobs, timed_evaluation
from sparknet.engine.local_steps import LocalPlan, RoundState, WorkerResult
from sparknet.engine.model_cache import cached_network
from sparknet.engine.overlap import CarryPlan, overlapped_task
from sparknet.engine.runner import Evaluation, WorkerResults
from sparknet.engine.tasks import (
    evaluate_one,
    evaluation_failed,
    executor_carry_store,
    preparing_failed,
    retry_policy,
    round_failed,
    train_shard,
)
from sparknet.engine.transport import BroadcastTransport
from sparknet.errors import ConfigError
from sparknet.models.kinds import InputPrep, ModelKind
from sparknet.models.objectives import MULTICLASS, Objective

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext

T = TypeVar("T")


class RddShards(Protocol):
    """Shards an RDD job reads (the ``memory`` and ``streamed`` placements)."""

    @property
    def context(self) -> SparkContext: ...

    @property
    def num_shards(self) -> int: ...

    @property
    def on_executor_disk(self) -> bool: ...

    def map_shards(self, fn: Callable[[int, Any], T]) -> RDD[T]: ...


class SparkRunner:
    """Runs the K workers as the K partitions of ``train`` on a SparkContext.

    The state always travels as a broadcast; ``state_dir`` is accepted, unused, so that every
    runner is made the same way (``engine.trainer.RUNNERS``).
    """

    def __init__(self, train: RddShards, *, test: RddShards | None = None,
                 device: str = "cpu", state_dir: str | Path | None = None) -> None:
        self.train, self.test = train, test
        self.device = device
        self._model: ModelKind | None = None
        context = train.context
        self._transport = BroadcastTransport(context)  # one broadcast per driver state
        self._retries = retry_policy(context.master,
                                     context.getConf().get("spark.task.maxFailures"))
        # Overlapped rounds: each job on a thread of its own, in a job group of its own.
        self._jobs = OrderedJobs(interrupt=context.cancelJobGroup,
                                 submitted=lambda group: bool(
                                     context.statusTracker().getJobIdsForGroup(group)))
        self._carry_tokens: set[str] = set()

    @property
    def num_workers(self) -> int:
        return self.train.num_shards

    @property
    def has_test_data(self) -> bool:
        return self.test is not None

    def now(self) -> float:
        return time.perf_counter()

    def start(self, model: ModelKind, *, state_bytes: int, fan_in: int = 4) -> None:
        """Starts the Python workers, loads their shards and builds their networks: one job.

        These are one-off costs of a run (like launching processes for DDP); paying them before
        the first round keeps them out of round timings, and so out of the auto-tau measurements.
        """
        check_state_size(state_bytes, results=min(self.num_workers, fan_in),
                         limits=MemoryLimits.of(self.train.context))
        if any(shards is not None and shards.on_executor_disk
               for shards in (self.train, self.test)):
            check_tasks_stay_with_files(dict(self.train.context.getConf().getAll()))
        self._model = model

        def prepare(index: int, shard: ShardRows) -> int:
            cached_network(model)
            return len(shard)

        try:
            for shards in (self.train, self.test):
                if shards is not None:
                    shards.map_shards(prepare).collect()
        except Exception as exc:
            raise preparing_failed(exc, self._retries) from exc

    def run_round(self, state: RoundState, plan: LocalPlan, *, fan_in: int) -> WorkerResult:
        model, device = self._model, self.device
        shared = self._transport.share(state.arrays())
        assert model is not None

        def train_one(index: int, shard: ShardRows) -> tuple[int, WorkerResult]:
            return index, train_shard(model, index, shard, RoundState.of(shared.value), plan,
                                      device)

        try:
            return tree_sum(self.train.map_shards(train_one),
                            num_partitions=self.train.num_shards, fan_in=fan_in)
        except Exception as exc:
            raise round_failed(plan.round_index, exc, self._retries) from exc

    def evaluate(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                 threads: int, objective: Objective = MULTICLASS) -> tuple[float, float]:
        return self._evaluate(self._transport.share(state.arrays()), prep,
                              batch_size=batch_size, threads=threads, objective=objective)

    def _evaluate(self, shared: Any, prep: InputPrep, *, batch_size: int, threads: int,
                  objective: Objective) -> tuple[float, float]:
        model, device = self._model, self.device
        assert model is not None and self.test is not None

        def evaluate_shard(index: int, shard: ShardRows) -> tuple[float, int, int]:
            return evaluate_one(model, shard, RoundState.of(shared.value), prep, device=device,
                                batch_size=batch_size, threads=threads,
                                objective=objective)

        try:
            parts = self.test.map_shards(evaluate_shard).collect()
        except Exception as exc:
            raise evaluation_failed(exc, self._retries) from exc
        loss = sum(p[0] for p in parts)
        correct = sum(p[1] for p in parts)
        total = sum(p[2] for p in parts)
        return loss / total, correct / total

    def submit_round(self, base: RoundState, plan: LocalPlan, *, carry: CarryPlan,
                     explicit: tuple[np.ndarray, ...] | None) -> Future[WorkerResults]:
        model, device = self._model, self.device
        assert model is not None
        context = self.train.context
        shared = broadcast(context, base.arrays())
        given = broadcast(context, explicit) if explicit is not None else None
        self._carry_tokens.add(carry.token)

        def train_one(index: int, shard: ShardRows) -> tuple[int, WorkerResult | None]:
            if carry.partitions is not None and index not in carry.partitions:
                return index, None

            def train(start: RoundState) -> WorkerResult:
                return train_shard(model, index, shard, start, plan, device)

            store = executor_carry_store(carry.token)
            return index, overlapped_task(
                train, index=index, round_index=plan.round_index,
                base=RoundState.of(shared.value), carry=carry,
                explicit=None if given is None else given.value, store=store)

        def job(group: str) -> WorkerResults:
            try:
                parts = self._in_group(group, lambda: self.train.map_shards(train_one).collect())
            except Exception as exc:
                raise round_failed(plan.round_index, exc, self._retries) from exc
            finally:
                for handle in (shared, given):
                    if handle is not None:
                        handle.destroy()
            return sorted(part for part in parts
                          if carry.partitions is None or part[0] in carry.partitions)

        return self._jobs.submit(job)

    def submit_evaluation(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                          threads: int, objective: Objective = MULTICLASS
                          ) -> Future[Evaluation]:
        shared = broadcast(self.train.context, state.arrays())

        def job(group: str) -> Evaluation:
            return timed_evaluation(lambda: self._in_group(group, lambda: self._evaluate(
                shared, prep, batch_size=batch_size, threads=threads, objective=objective)),
                release=shared.destroy)

        return self._jobs.submit(job)

    def _in_group(self, group: str, action: Callable[[], T]) -> T:
        context = self.train.context
        context.setJobGroup(group, "sparknet overlapped round", interruptOnCancel=False)
        try:
            return action()
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    def cancel(self) -> None:
        self._jobs.cancel()

    def close(self) -> None:
        self._jobs.shutdown()
        if self._carry_tokens:
            tokens = tuple(self._carry_tokens)

            def clear(index: int, shard: ShardRows) -> int:
                return sum(executor_carry_store(token).clear() for token in tokens)

            with contextlib.suppress(Exception):  # the files go with the application anyway
                self.train.map_shards(clear).collect()
            self._carry_tokens.clear()
        self._transport.release()


@dataclass(frozen=True)
class MemoryLimits:
    """What the driver and the executors can hold, read from a running SparkContext."""

    max_result: int        # spark.driver.maxResultSize in bytes (0: no limit)
    driver_heap: int       # the driver JVM's maximum heap (spark.driver.memory)
    executor_memory: int   # spark.executor.memory (0: executors are the driver, local mode)

    @classmethod
    def of(cls, sc: SparkContext) -> MemoryLimits:
        conf, jvm = sc.getConf(), sc._jvm
        assert jvm is not None
        size = jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes
        local = (sc.master or "local").startswith("local")
        return cls(max_result=int(size(conf.get("spark.driver.maxResultSize", "1g"))),
                   driver_heap=int(jvm.java.lang.Runtime.getRuntime().maxMemory()),
                   executor_memory=0 if local else
                   int(size(conf.get("spark.executor.memory", "1g"))))


def check_state_size(state_bytes: int, *, results: int, limits: MemoryLimits) -> None:
    """Refuses, before any job, a network state the driver or an executor cannot hold.

    Each round the driver holds the broadcast state (about two copies while it is split into
    blocks) and receives ``results`` results of about the state's size (the change of every
    weight; compression makes them smaller, so this errs on the safe side); an executor holds
    the broadcast and its task's result. A state beyond these used to end in an
    ``OutOfMemoryError`` of the driver JVM, reported as a task failed in all its attempts.
    """
    if limits.max_result and results * state_bytes > limits.max_result:
        raise ConfigError(
            f"the network's state is {_size(state_bytes)} and the driver receives {results} "
            f"results of that size a round ({_size(results * state_bytes)}), above "
            f"spark.driver.maxResultSize ({_size(limits.max_result)}): raise "
            "spark.driver.maxResultSize, lower engine.tree_fan_in, or train a smaller network")
    need = (results + 2) * state_bytes
    if need > 0.9 * limits.driver_heap:
        raise ConfigError(
            f"the network's state is {_size(state_bytes)}; a round needs about {_size(need)} "
            f"of the driver's heap ({results + 2} copies), which has "
            f"{_size(limits.driver_heap)}: raise spark.driver.memory, lower "
            "engine.tree_fan_in, or train a smaller network")
    if limits.executor_memory and 2 * state_bytes > 0.6 * limits.executor_memory:
        raise ConfigError(
            f"the network's state is {_size(state_bytes)}; an executor holds about two copies, "
            f"more than 60% of spark.executor.memory ({_size(limits.executor_memory)}): "
            "raise spark.executor.memory or train a smaller network")


def check_tasks_stay_with_files(conf: dict[str, str]) -> None:
    """Refuses the Spark settings that would run a task away from its streamed shard file.

    A streamed shard is a file on the executor that wrote it, found through a cached marker.
    A speculative copy runs on another executor, where the file is not; decommissioning with
    RDD block migration moves the marker but not the file. Without migration a departing
    executor's markers are recomputed elsewhere, which writes the files anew there.
    """
    def on(key: str) -> bool:
        return conf.get(key, "false").strip().lower() == "true"

    if on("spark.speculation"):
        raise ConfigError(
            "spark.speculation=true runs copies of slow tasks on other executors, which do not "
            "hold the streamed shard files: set spark.speculation=false, or do not stream the "
            "data (drop --stream; the shards then travel as Spark blocks)")
    if on("spark.decommission.enabled") and on("spark.storage.decommission.enabled") and \
            on("spark.storage.decommission.rddBlocks.enabled"):
        raise ConfigError(
            "spark.storage.decommission.rddBlocks.enabled=true moves the streamed shards' "
            "cached markers off a decommissioned executor but not their files: set it to false "
            "(a departing executor's shards are then written anew elsewhere), or do not stream "
            "the data (drop --stream)")


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if count < 1024:
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} GiB"


def tree_sum(indexed: RDD[tuple[int, WorkerResult]], *, num_partitions: int,
             fan_in: int) -> WorkerResult:
    """Sums results in partition order; the driver receives at most ``fan_in`` of them.

    Above ``fan_in`` partitions, groups of ``fan_in`` consecutive partitions are summed on the
    executors first (level by level), each group in index order so the sum is reproducible.
    """
    level = indexed
    for groups in tree_levels(num_partitions, fan_in):
        level = (level.map(lambda item: (tree_group(item[0], fan_in), item))
                 .groupByKey(groups, partitionFunc=lambda key: key)
                 .map(lambda group: (group[0], combine_in_order(group[1]))))
    return combine_in_order(level.collect())

