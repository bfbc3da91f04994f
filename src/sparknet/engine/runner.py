"""The seam between the round loop and where the K workers run.

A ``Runner`` runs one round's K tasks and combines their results in partition order, runs the
distributed evaluation, and keeps the clock the loop records. ``InProcessRunner`` runs the K
virtual workers one after another in this process (the simulator); ``SparkRunner``
(``sparknet.engine.spark_runner``) runs them as Spark tasks. Both call the same worker
functions and the same ordered sum, so their weights are bit-identical.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

import numpy as np
import torch

from sparknet.data.shards import Shard, split_into_shards
from sparknet.engine.aggregate import tree_combine
from sparknet.engine.local_steps import (
    LocalPlan,
    RoundState,
    WorkerResult,
    evaluate_shard,
    run_local_steps,
)
from sparknet.engine.overlap import CarryPlan, overlapped_task, sent_change
from sparknet.errors import ConfigError
from sparknet.flat import FlatLayout
from sparknet.models.kinds import InputPrep, ModelKind
from sparknet.models.objectives import MULTICLASS, Objective


class Runner(Protocol):
    """Where a round's tasks run; the loop needs nothing else from Spark."""

    @property
    def num_workers(self) -> int: ...

    @property
    def has_test_data(self) -> bool: ...

    def now(self) -> float:
        """The clock rounds are timed by (seconds)."""
        ...

    def start(self, model: ModelKind, *, state_bytes: int, fan_in: int = 4) -> None:
        """One-off preparation before round 0 (start workers, load data, build networks).

        ``state_bytes``: the size of what each round sends to the workers, for runners whose
        transport or memory has a limit; ``fan_in``: at most this many results reach the driver.
        """
        ...

    def run_round(self, state: RoundState, plan: LocalPlan, *, fan_in: int) -> WorkerResult:
        """Every worker's ``run_local_steps``, summed in partition order."""
        ...

    def evaluate(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                 threads: int, objective: Objective = MULTICLASS) -> tuple[float, float]:
        """(mean loss, top-1 accuracy) on the test data."""
        ...

    def submit_round(self, base: RoundState, plan: LocalPlan, *, carry: CarryPlan,
                     explicit: tuple[np.ndarray, ...] | None) -> Future[WorkerResults]:
        """Starts an overlapped round's job (``engine.overlap``) and returns at once.

        Its result: each partition's ``(index, result)``, the result None where the task's
        carry was missing (``engine.overlap.overlapped_task``).
        """
        ...

    def submit_evaluation(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                          threads: int, objective: Objective = MULTICLASS
                          ) -> Future[Evaluation]:
        """``evaluate`` as a job queued behind the rounds already submitted; with the seconds
        the job took."""
        ...

    def cancel(self) -> None:
        """Cancels the submitted jobs still running and waits for them to end."""
        ...

    def close(self) -> None: ...


WorkerResults = list[tuple[int, WorkerResult | None]]
Evaluation = tuple[float, float, float]  # (mean loss, accuracy, seconds the job took)


def done(value: object) -> Future:  # type: ignore[type-arg]
    """A future that already holds ``value``."""
    future: Future[object] = Future()
    future.set_result(value)
    return future


class InProcessRunner:
    """K virtual workers in turn on this thread, with a modelled clock.

    A round takes ``max(worker compute) + overhead_seconds`` on the clock, as on a cluster
    whose slowest worker and a synchronisation overhead S set the pace; an overlapped round
    ``max(worker compute, overhead_seconds)``, the driver's S hidden behind the workers'
    steps. Overlapped rounds take every carry from the driver's copy (``explicit``) or, for
    the round just submitted, from this runner's memory of its last round. The workers share one
    network on ``device`` (``cuda``, or ``auto``: CUDA when this process has it). ``train``
    is the arrays, shuffled into ``num_workers`` shards with ``seed``, or the shards.
    """

    def __init__(self, train: tuple[np.ndarray, np.ndarray] | list[Shard], *,
                 num_workers: int, seed: int,
                 test: tuple[np.ndarray, np.ndarray] | None = None, device: str = "cpu",
                 overhead_seconds: float = 0.0) -> None:
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise ConfigError("device='cuda': this process has no CUDA device; use --device "
                              "cpu or auto")
        self.device = torch.device("cuda" if device != "cpu" and cuda else "cpu")
        if overhead_seconds < 0:
            raise ConfigError(f"overhead_seconds={overhead_seconds} is invalid: use S >= 0")
        self.shards = (list(train) if isinstance(train, list)
                       else split_into_shards(*train, num_workers, seed=seed))
        if min(len(s) for s in self.shards) == 0:
            raise ConfigError(f"{len(train[1])} training examples cannot fill "
                              f"num_workers={num_workers} shards: use fewer workers")
        self.test = Shard(*test) if test is not None else None
        self.overhead_seconds = overhead_seconds
        self.clock = 0.0
        self.compute_total = 0.0
        self.steps_total = 0
        self._module: torch.nn.Module | None = None
        self._layout: FlatLayout | None = None
        self._carries: dict[int, np.ndarray] = {}  # the last overlapped round's, by partition

    @property
    def num_workers(self) -> int:
        return len(self.shards)

    @property
    def has_test_data(self) -> bool:
        return self.test is not None

    @property
    def step_seconds(self) -> float:
        """Measured compute time of one local step, averaged over every worker and round."""
        return self.compute_total / max(1, self.steps_total)

    def now(self) -> float:
        return self.clock

    def start(self, model: ModelKind, *, state_bytes: int, fan_in: int = 4) -> None:
        self._module = model.build()
        self._layout = FlatLayout.of(self._module)

    def run_round(self, state: RoundState, plan: LocalPlan, *, fan_in: int) -> WorkerResult:
        assert self._module is not None and self._layout is not None
        results = [run_local_steps(self._module, self._layout, shard, state, plan,
                                   partition=index, device=self.device)
                   for index, shard in enumerate(self.shards)]
        total = tree_combine(results, fan_in=fan_in)
        compute = max(r.compute_seconds for r in results)
        self.compute_total += sum(r.compute_seconds for r in results)
        self.steps_total += plan.tau * len(results)
        self.clock += compute + self.overhead_seconds
        return total

    def submit_round(self, base: RoundState, plan: LocalPlan, *, carry: CarryPlan,
                     explicit: tuple[np.ndarray, ...] | None) -> Future[WorkerResults]:
        assert self._module is not None and self._layout is not None
        module, layout = self._module, self._layout
        known = explicit
        if known is None and plan.round_index > 0:
            known = tuple(self._carries[index] for index in range(len(self.shards)))
        results: WorkerResults = []
        for index, shard in enumerate(self.shards):
            if carry.partitions is not None and index not in carry.partitions:
                continue

            def train(start: RoundState, shard: Shard = shard, index: int = index
                      ) -> WorkerResult:
                return run_local_steps(module, layout, shard, start, plan, partition=index,
                                       device=self.device)

            result = overlapped_task(train, index=index, round_index=plan.round_index,
                                     base=base, carry=carry, explicit=known, store=None)
            assert result is not None
            results.append((index, result))
        self._carries = {index: sent_change(result) for index, result in results
                         if result is not None}
        compute = max(r.compute_seconds for _, r in results if r is not None)
        self.compute_total += sum(r.compute_seconds for _, r in results if r is not None)
        self.steps_total += plan.tau * len(results)
        self.clock += max(compute, self.overhead_seconds)
        return done(results)

    def submit_evaluation(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                          threads: int, objective: Objective = MULTICLASS
                          ) -> Future[Evaluation]:
        loss, accuracy = self.evaluate(state, prep, batch_size=batch_size, threads=threads,
                                       objective=objective)
        return done((loss, accuracy, 0.0))

    def cancel(self) -> None:
        pass

    def evaluate(self, state: RoundState, prep: InputPrep, *, batch_size: int,
                 threads: int, objective: Objective = MULTICLASS) -> tuple[float, float]:
        assert self._module is not None and self._layout is not None and self.test is not None
        loss, correct, count = evaluate_shard(self._module, self._layout, self.test, state, prep,
                                              batch_size=batch_size,
                                              device=self.device, threads=threads,
                                              objective=objective)
        return loss / count, correct / count

    def close(self) -> None:
        self._module = None
