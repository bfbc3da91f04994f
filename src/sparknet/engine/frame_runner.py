"""The DataFrame runner: SparkNet's rounds with DataFrame APIs only, for Spark Connect.

A Connect session has no SparkContext, so no broadcast and no RDDs. Each round here is one
``mapInArrow`` over the cached shards (``data.placements.frames.FrameShards``); the round's
state reaches the tasks through ``engine.transport``: inside the plan or, for large networks,
as a file every executor can read; the K results come back as Arrow rows (with a state directory, as
safetensors files those rows name) and, above ``tree_fan_in`` workers, are summed on the
executors level by level (``groupBy(...).applyInArrow``) in partition order, so the driver
holds at most ``tree_fan_in`` full copies. The worker
functions and the ordered sum are the classic runner's: the weights are bit-identical.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from safetensors.numpy import load_file, save_file

from sparknet.averaging import EncodedDelta
from sparknet.data.placements.frames import FrameShards
from sparknet.data.shards import Shard
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
from sparknet.engine.transport import transport_for
from sparknet.errors import ConfigError
from sparknet.models.kinds import InputPrep, ModelKind
from sparknet.models.objectives import MULTICLASS, Objective

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# A plan above this size is refused by Spark Connect's default gRPC message limit (128 MiB);
# measured in benchmarks/connect.py, with room for the rest of the plan.
INLINE_LIMIT_BYTES = 96 * 2**20

RESULT_SCHEMA = ("shard int, weight double, loss_sum double, correct long, samples long, "
                 "bytes_sent long, workers long, compute_seconds double, kind string, "
                 "delta binary, scales binary, ints binary, momentum binary, file string")
_ARROW_RESULT = pa.schema([
    ("shard", pa.int32()), ("weight", pa.float64()), ("loss_sum", pa.float64()),
    ("correct", pa.int64()), ("samples", pa.int64()), ("bytes_sent", pa.int64()),
    ("workers", pa.int64()), ("compute_seconds", pa.float64()), ("kind", pa.string()),
    ("delta", pa.binary()), ("scales", pa.binary()), ("ints", pa.binary()),
    ("momentum", pa.binary()), ("file", pa.string())])
EVAL_SCHEMA = "shard int, loss double, correct long, count long"
_ARROW_EVAL = pa.schema([("shard", pa.int32()), ("loss", pa.float64()),
                         ("correct", pa.int64()), ("count", pa.int64())])
_ARROW_ROWS = pa.schema([("rows", pa.int64())])
_DTYPES = {"none": np.float32, "bf16": np.int16, "int8": np.int8}
_ARRAYS = ("delta", "scales", "ints", "momentum")


@dataclass(frozen=True)
class ResultFiles:
    """Where workers put their results when they are too large for Arrow rows (``state_dir``).

    A file is named by (run, round, level, index), so a retried task rewrites the same bytes
    and runs sharing the folder never touch each other's files.
    """

    folder: str
    round_index: int
    run: str = "run"  # the runner's token

    def path(self, level: int, index: int) -> Path:
        return Path(self.folder) / (f"result-{self.run}-{self.round_index:06d}-{level}-"
                                    f"{index:06d}.safetensors")

    def remove(self) -> None:
        for stale in Path(self.folder).glob(f"result-{self.run}-{self.round_index:06d}-*"):
            stale.unlink(missing_ok=True)


def result_row(index: int, result: WorkerResult, files: ResultFiles | None = None,
               level: int = 0) -> dict[str, Any]:
    """A WorkerResult as plain Arrow values, its arrays inline or in a safetensors file."""
    delta = result.delta
    encoded = delta if isinstance(delta, EncodedDelta) else EncodedDelta("none", delta)
    arrays = {"delta": encoded.data, "scales": encoded.scales,
              "ints": result.ints_max.astype(np.int64), "momentum": result.momentum_sum}
    row = {"shard": index, "weight": result.weight, "loss_sum": result.loss_sum,
           "correct": result.correct, "samples": result.samples,
           "bytes_sent": result.bytes_sent, "workers": result.workers,
           "compute_seconds": result.compute_seconds, "kind": encoded.kind, "file": None,
           **dict.fromkeys(_ARRAYS)}
    if files is None:
        row.update({k: None if v is None else v.tobytes() for k, v in arrays.items()})
        return row
    path = files.path(level, index)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v for k, v in arrays.items() if v is not None}, str(tmp))
    tmp.replace(path)
    row["file"] = str(path)
    return row


def placeholder_row(index: int, kind: str = "missing") -> dict[str, Any]:
    """The row of a task that did not train: ``missing``, its overlapped round's carry was
    missing; ``unkept``, its worker held no copy of its shard (``map_kept_shards``)."""
    return {"shard": index, "weight": 0.0, "loss_sum": 0.0, "correct": 0, "samples": 0,
            "bytes_sent": 0, "workers": 0, "compute_seconds": 0.0, "kind": kind,
            "file": None, **dict.fromkeys(_ARRAYS)}


def _unkept_row(index: int) -> dict[str, Any]:
    return placeholder_row(index, "unkept")


def results_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=_ARROW_RESULT)


def from_row(row: dict[str, Any]) -> tuple[int, WorkerResult]:
    kind = row["kind"]
    dtypes = {"delta": _DTYPES[kind], "scales": np.float32, "ints": np.int64,
              "momentum": np.float32}
    if row["file"] is not None:
        arrays: dict[str, np.ndarray | None] = dict.fromkeys(_ARRAYS)
        arrays.update(load_file(row["file"]))
    else:
        arrays = {k: None if row[k] is None else np.frombuffer(row[k], dtypes[k]).copy()
                  for k in _ARRAYS}
    data, ints = arrays["delta"], arrays["ints"]
    assert data is not None and ints is not None
    delta: EncodedDelta | np.ndarray = (data if kind == "none"
                                        else EncodedDelta(kind, data, arrays["scales"]))
    return int(row["shard"]), WorkerResult(
        delta=delta, weight=row["weight"], loss_sum=row["loss_sum"], correct=row["correct"],
        samples=row["samples"], ints_max=ints, momentum_sum=arrays["momentum"],
        bytes_sent=row["bytes_sent"], workers=row["workers"],
        compute_seconds=row["compute_seconds"])


def _group_combiner(files: ResultFiles | None, depth: int) -> Callable[[pa.Table], pa.Table]:
    def combine_group(table: pa.Table) -> pa.Table:
        """Runs on executors: one group of consecutive partitions, in index order."""
        rows = table.to_pylist()
        total = combine_in_order(from_row(row) for row in rows)
        row = result_row(int(rows[0]["group"]), total, files, depth)
        return pa.Table.from_batches([results_batch([row])])

    return combine_group


def tree_sum_frame(results: DataFrame, *, count: int, fan_in: int,
                   files: ResultFiles | None = None) -> WorkerResult:
    """The classic runner's ``tree_sum`` with DataFrame operations only."""
    from pyspark.sql import functions as F

    level = results
    for depth, groups in enumerate(tree_levels(count, fan_in), start=1):
        # The grouping rule, evaluated here for every index and applied in the JVM as a map.
        group_of = F.create_map(*[F.lit(x) for index in range(count)
                                  for x in (index, tree_group(index, fan_in))])
        level = (level.withColumn("group", group_of[F.col("shard")])
                 .groupBy("group").applyInArrow(_group_combiner(files, depth), RESULT_SCHEMA))
        count = groups
    return combine_in_order(from_row(row) for row in level.toArrow().to_pylist())


class FrameRunner:
    """Runs the K workers as ``mapInArrow`` tasks over a ``FrameShards``."""

    def __init__(self, train: FrameShards, *, test: FrameShards | None = None,
                 device: str = "cpu", state_dir: str | Path | None = None) -> None:
        self.train, self.test = train, test
        self.device = device
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._transport = transport_for(train.session, state_dir=state_dir)
        self._model: ModelKind | None = None
        self._retries = retry_policy(None, None)  # a Connect client cannot see the master
        self._token = uuid.uuid4().hex[:12]  # this run's files in a shared state_dir
        # Overlapped rounds: each job on a thread of its own, under an operation tag.
        self._jobs = OrderedJobs(interrupt=train.session.interruptTag)
        self._carry_tokens: set[str] = set()

    @property
    def num_workers(self) -> int:
        return self.train.num_shards

    @property
    def has_test_data(self) -> bool:
        return self.test is not None

    def now(self) -> float:
        return time.perf_counter()

    def _check_state_size(self, size: int) -> None:
        """Refuses, before any job, a state too large for the plan with nowhere else to go."""
        if size > INLINE_LIMIT_BYTES and self._transport.name == "inline":
            raise ConfigError(
                f"the network's state is {size / 2**20:.0f} MiB, above the "
                f"{INLINE_LIMIT_BYTES / 2**20:.0f} MiB a Spark Connect plan carries: give a "
                "state directory that every executor can read (state_dir=..., "
                "sparknet train --state-dir DIR)")

    def start(self, model: ModelKind, *, state_bytes: int, fan_in: int = 4) -> None:
        self._check_state_size(state_bytes)
        self._model = model
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)  # for the results' files

        def prepare(index: int, shard: Shard) -> dict[str, Any]:
            cached_network(model)
            return {"rows": len(shard)}

        try:
            for shards in (self.train, self.test):
                if shards is not None:
                    shards.map_shards(prepare, _ARROW_ROWS, "rows long").toArrow()
        except Exception as exc:
            raise preparing_failed(exc, self._retries) from exc

    def run_round(self, state: RoundState, plan: LocalPlan, *, fan_in: int) -> WorkerResult:
        model, device = self._model, self.device
        assert model is not None
        shared = self._transport.share(state.arrays())
        files = (ResultFiles(str(self.state_dir), plan.round_index, self._token)
                 if self.state_dir is not None else None)

        def train_one(index: int, shard: Shard) -> dict[str, Any]:
            result = train_shard(model, index, shard, RoundState.of(shared.value), plan, device)
            return result_row(index, result, files)

        try:
            if self.train.num_shards <= fan_in:  # the driver gets every row: kept shards
                return combine_in_order(from_row(row) for row in self._train_rows(train_one))
            results = self.train.map_shards(train_one, _ARROW_RESULT, RESULT_SCHEMA)
            return tree_sum_frame(results, count=self.train.num_shards, fan_in=fan_in,
                                  files=files)
        except Exception as exc:
            raise round_failed(plan.round_index, exc, self._retries) from exc
        finally:
            if files is not None:
                files.remove()

    def _train_rows(self, train_one: Callable[[int, Shard], dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        """Every training shard's result row: from the workers' kept shards, and the shards
        no worker kept read in full again (which keeps them for the next round)."""
        rows = self.train.map_kept_shards(train_one, _ARROW_RESULT, RESULT_SCHEMA,
                                          unkept=_unkept_row).toArrow().to_pylist()
        unkept = tuple(int(row["shard"]) for row in rows if row["kind"] == "unkept")
        if unkept:
            rows = [row for row in rows if row["kind"] != "unkept"] + self.train.map_shards(
                train_one, _ARROW_RESULT, RESULT_SCHEMA, only=unkept).toArrow().to_pylist()
        return sorted(rows, key=lambda row: int(row["shard"]))

    def evaluate(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                 threads: int, objective: Objective = MULTICLASS) -> tuple[float, float]:
        return self._evaluate(self._transport.share(state.arrays()), prep,
                              batch_size=batch_size, threads=threads, objective=objective)

    def _evaluate(self, shared: Any, prep: InputPrep, *, batch_size: int, threads: int,
                  objective: Objective) -> tuple[float, float]:
        model, device = self._model, self.device
        assert model is not None and self.test is not None

        def evaluate_shard(index: int, shard: Shard) -> dict[str, Any]:
            loss, correct, count = evaluate_one(model, shard, RoundState.of(shared.value), prep,
                                                device=device, batch_size=batch_size,
                                                threads=threads, objective=objective)
            return {"shard": index, "loss": loss, "correct": correct, "count": count}

        try:
            table = self.test.map_shards(evaluate_shard, _ARROW_EVAL, EVAL_SCHEMA).toArrow()
        except Exception as exc:
            raise evaluation_failed(exc, self._retries) from exc
        parts = sorted(zip(*(table.column(c).to_pylist()
                             for c in ("shard", "loss", "correct", "count")), strict=True))
        total = sum(p[3] for p in parts)  # summed in shard order, as the classic runner does
        return sum(p[1] for p in parts) / total, sum(p[2] for p in parts) / total

    def submit_round(self, base: RoundState, plan: LocalPlan, *, carry: CarryPlan,
                     explicit: tuple[np.ndarray, ...] | None) -> Future[WorkerResults]:
        model, device = self._model, self.device
        assert model is not None
        state_transport = transport_for(self.train.session, state_dir=self.state_dir)
        carry_transport = transport_for(self.train.session, state_dir=self.state_dir)
        shared = state_transport.share(base.arrays())
        given = carry_transport.share(explicit) if explicit is not None else None
        files = (ResultFiles(str(self.state_dir), plan.round_index, self._token)
                 if self.state_dir is not None else None)
        self._carry_tokens.add(carry.token)

        def train_one(index: int, shard: Shard) -> dict[str, Any]:
            if carry.partitions is not None and index not in carry.partitions:
                return placeholder_row(index)

            def train(start: RoundState) -> WorkerResult:
                return train_shard(model, index, shard, start, plan, device)

            store = executor_carry_store(carry.token)
            explicit_value = None if given is None else given.value
            result = overlapped_task(
                train, index=index, round_index=plan.round_index,
                base=RoundState.of(shared.value), carry=carry,
                explicit=None if explicit_value is None else tuple(
                    a for a in explicit_value if a is not None), store=store)
            return placeholder_row(index) if result is None else result_row(index, result, files)

        def job(tag: str) -> WorkerResults:
            try:
                rows = self._tagged(tag, lambda: self._train_rows(train_one))
                parts = [(int(row["shard"]), None if row["kind"] == "missing"
                          else from_row(row)[1]) for row in rows]
            except Exception as exc:
                raise round_failed(plan.round_index, exc, self._retries) from exc
            finally:
                state_transport.release()
                carry_transport.release()
                if files is not None:
                    files.remove()
            return sorted((p for p in parts
                           if carry.partitions is None or p[0] in carry.partitions),
                          key=lambda item: item[0])

        return self._jobs.submit(job)

    def submit_evaluation(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                          threads: int, objective: Objective = MULTICLASS
                          ) -> Future[Evaluation]:
        transport = transport_for(self.train.session, state_dir=self.state_dir)
        shared = transport.share(state.arrays())

        def job(tag: str) -> Evaluation:
            return timed_evaluation(lambda: self._tagged(tag, lambda: self._evaluate(
                shared, prep, batch_size=batch_size, threads=threads, objective=objective)),
                release=transport.release)

        return self._jobs.submit(job)

    def _tagged(self, tag: str, action: Callable[[], Any]) -> Any:
        session = self.train.session
        session.addTag(tag)
        try:
            return action()
        finally:
            session.removeTag(tag)

    def cancel(self) -> None:
        self._jobs.cancel()

    def close(self) -> None:
        self._jobs.shutdown()
        if self._carry_tokens:
            tokens = tuple(self._carry_tokens)

            def clear(index: int, shard: Shard) -> dict[str, Any]:
                return {"rows": sum(executor_carry_store(t).clear() for t in tokens)}

            with contextlib.suppress(Exception):  # the files go with the application anyway
                self.train.map_shards(clear, _ARROW_ROWS, "rows long").toArrow()
            self._carry_tokens.clear()
        self._transport.release()
