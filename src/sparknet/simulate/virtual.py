"""K virtual workers run in turn in one process: SparkNet's rounds without Spark.

``simulate`` is the engine's own round loop (``sparknet.engine.loop``) over the in-process
runner, so with the same config, seed and shards it ends with a Spark run's weights, bit for
bit, for any K on any machine. Only the wall time is not real: it is modelled as
``rounds * (tau * C + S)`` from the measured step time C and a chosen overhead S.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparknet.config import TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.engine.defaults import resolve_epoch_tau
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.runner import InProcessRunner
from sparknet.models.registry import model_of, resolve_model
from sparknet.models.zoo import ModelFactory


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


def simulate(train: tuple[np.ndarray, np.ndarray], *, config: TrainConfig, spec: InputSpec,
             test: tuple[np.ndarray, np.ndarray] | None = None,
             model: ModelFactory | None = None, overhead_seconds: float = 0.0,
             eval_every: int | None = None, stop: Callable[[dict[str, Any]], bool] | None = None,
             tau_decisions: list[int] | None = None) -> SimulationResult:
    """Runs ``config`` with K virtual workers on one thread and returns its round records.

    ``train``/``test`` are (features, labels) arrays, sharded exactly as
    ``sparknet.data.sources.from_arrays`` shards them. ``eval_every`` overrides the config's
    evaluation cadence (rounds); ``stop`` ends the run early after an evaluated round for which
    it returns True. ``overhead_seconds`` is the modelled S of every round.
    """
    runner = InProcessRunner(train, num_workers=config.engine.num_workers, seed=config.seed,
                             test=test, device=config.engine.device,
                             overhead_seconds=overhead_seconds)
    config = resolve_epoch_tau(config, [len(shard) for shard in runner.shards])
    evaluated_stop = None
    if stop is not None:
        def evaluated_stop(record: dict[str, Any]) -> bool:
            return record["test_accuracy"] is not None and stop(record)

    result = run_rounds(runner, config=config, spec=spec,
                        model=resolve_model(model) if model is not None else model_of(config),
                        options=LoopOptions(eval_every=eval_every, stop=evaluated_stop,
                                            tau_decisions=tuple(tau_decisions or ())))
    for record in result.metrics:
        record["model_seconds"] = record["wall_seconds"]  # the modelled clock
    return SimulationResult(config=config, floats=result.floats, ints=result.ints,
                            records=result.metrics, step_seconds=runner.step_seconds,
                            tau_decisions=result.tau_decisions)
