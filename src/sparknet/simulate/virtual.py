"""K virtual workers run in turn in one process: SparkNet's rounds without Spark.

Every step calls the functions the Spark engine runs: ``run_local_steps`` for each worker,
the engine's ordered (tree) sum, ``mean_delta`` and ``outer_step`` on the driver. With the same
config, seed and shards a simulated run therefore ends with the Spark run's weights, bit for
bit, for any K on any machine; only the wall time is not real. It is modelled as
``rounds * (tau * C + S)`` from the measured step time C and a chosen overhead S.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sparknet.averaging import init_outer_state
from sparknet.config import TrainConfig
from sparknet.data.shards import InputSpec, Shard, split_into_shards
from sparknet.engine.aggregate import DriverState, apply_round, combine_in_order
from sparknet.engine.local_steps import LocalPlan, RoundState, WorkerResult, evaluate_shard
from sparknet.engine.local_steps import run_local_steps as _run_local_steps
from sparknet.engine.tau import RoundTiming, TauSchedule
from sparknet.engine.trainer import initial_state, parameter_mask, tau_policy
from sparknet.errors import ConfigError, TrainingError
from sparknet.models.registry import ModelFactory, model_source


@dataclass
class SimulationResult:
    """The final flat state and one record per round (test accuracy where evaluated)."""

    config: TrainConfig
    floats: np.ndarray
    ints: np.ndarray
    records: list[dict[str, Any]]
    step_seconds: float
    tau_decisions: list[int] = field(default_factory=list)

    def curve(self) -> list[dict[str, Any]]:
        """The evaluated rounds only: the accuracy-against-round curve."""
        return [r for r in self.records if r["test_accuracy"] is not None]


def tree_combine(results: list[WorkerResult], *, fan_in: int) -> WorkerResult:
    """The engine's ``tree_sum`` without Spark: the same groups, summed in the same order."""
    level = list(enumerate(results))
    while len(level) > fan_in:
        groups: dict[int, list[tuple[int, WorkerResult]]] = {}
        for index, result in level:
            groups.setdefault(index // fan_in, []).append((index, result))
        level = [(key, combine_in_order(members)) for key, members in sorted(groups.items())]
    return combine_in_order(level)


def simulate(train: tuple[np.ndarray, np.ndarray], *, config: TrainConfig, spec: InputSpec,
             test: tuple[np.ndarray, np.ndarray] | None = None,
             model: ModelFactory | None = None, overhead_seconds: float = 0.0,
             eval_every: int | None = None, stop: Callable[[dict[str, Any]], bool] | None = None,
             tau_decisions: list[int] | None = None) -> SimulationResult:
    """Runs ``config`` with K virtual workers on one thread and returns its round records.

    ``train``/``test`` are (features, labels) arrays, sharded exactly as
    ``sparknet.data.sources.from_arrays`` shards them. ``eval_every`` overrides the config's
    evaluation cadence (rounds); ``stop`` ends the run early after an evaluated round for which
    it returns True. ``overhead_seconds`` is the modelled S used in ``model_seconds`` and by
    an ``auto`` tau.
    """
    engine = config.engine
    if engine.device != "cpu":
        raise ConfigError(f"device={engine.device!r}: the simulator runs on the CPU; use "
                          "--device cpu")
    if overhead_seconds < 0:
        raise ConfigError(f"overhead_seconds={overhead_seconds} is invalid: use S >= 0")
    shards = split_into_shards(*train, engine.num_workers, seed=config.seed)
    if min(len(s) for s in shards) == 0:
        raise ConfigError(f"{len(train[1])} training examples cannot fill "
                          f"num_workers={engine.num_workers} shards: use fewer workers")
    test_shard = Shard(*test) if test is not None else None
    source = model_source(model if model is not None else config.model)
    layout, floats, ints = initial_state(source, config.seed)
    mask = parameter_mask(source, layout)
    outer = init_outer_state(config.outer, layout.num_floats)
    momentum = (np.zeros(layout.num_floats, np.float32)
                if config.optimizer.momentum_policy == "average" else None)
    module = source.build()
    device = torch.device("cpu")
    schedule = TauSchedule(tau_policy(config), list(tau_decisions or []))
    cadence = engine.eval_every if eval_every is None else eval_every
    records: list[dict[str, Any]] = []
    step_offset = samples = 0
    model_seconds = compute_total = 0.0
    steps_total = 0
    for round_index in range(engine.rounds):
        tau = schedule.tau_for(round_index)
        plan = LocalPlan(seed=config.seed, round_index=round_index, step_offset=step_offset,
                         tau=tau, batch_size=engine.batch_size, optimizer=config.optimizer,
                         input_spec=spec, compression=config.outer.compression,
                         sample_weight=config.outer.name == "weighted",
                         threads=engine.threads_per_worker)
        state = RoundState(floats, ints, momentum)
        results = [_run_local_steps(module, layout, shard, state, plan, partition=index,
                                    device=device) for index, shard in enumerate(shards)]
        total = tree_combine(results, fan_in=engine.tree_fan_in)
        update = apply_round(config.outer, DriverState(floats, ints, momentum, outer), total,
                             mask)
        finite = update is not None
        if update is not None:
            floats, ints, momentum, outer = update
        elif engine.on_non_finite == "stop":
            raise TrainingError(f"round {round_index}: the loss or update became NaN/infinite; "
                                "lower the learning rate")
        # The slowest virtual worker stands for the round, as on a real cluster.
        compute = max(r.compute_seconds for r in results)
        compute_total += sum(r.compute_seconds for r in results)
        steps_total += tau * len(results)
        model_seconds += compute + overhead_seconds
        schedule.observe(RoundTiming(tau, compute + overhead_seconds, compute))
        step_offset += tau
        samples += total.samples
        record: dict[str, Any] = {
            "round": round_index + 1, "tau": tau, "samples": samples,
            "steps_per_worker": step_offset, "compute_seconds": compute,
            "model_seconds": model_seconds,
            "train_loss": total.loss_sum / total.samples,
            "bytes_per_worker": total.bytes_sent // max(1, total.workers),
            "update_applied": finite, "test_loss": None, "test_accuracy": None,
        }
        last = round_index + 1 == engine.rounds
        if test_shard is not None and (last or (cadence > 0 and (round_index + 1) % cadence == 0)):
            loss, correct, count = evaluate_shard(
                module, layout, test_shard, RoundState(floats, ints), spec,
                batch_size=engine.eval_batch_size, device=device,
                threads=engine.threads_per_worker)
            record.update(test_loss=loss / count, test_accuracy=correct / count)
        records.append(record)
        if stop is not None and record["test_accuracy"] is not None and stop(record):
            break
    step_seconds = compute_total / max(1, steps_total)
    return SimulationResult(config=config, floats=floats, ints=ints, records=records,
                            step_seconds=step_seconds, tau_decisions=list(schedule.decisions))
