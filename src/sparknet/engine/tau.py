"""How many local steps each round runs: a recorded schedule that resumed runs replay.

The trainer asks ``TauSchedule.tau_for(round)`` before each round and records the answer.
Decisions already in the schedule (from a checkpoint or an earlier run) are replayed, so a
resumed run takes the same steps as an undisturbed one; new rounds ask the policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from sparknet.config import EPOCH_TAU_CAP, TrainConfig


@dataclass(frozen=True)
class RoundTiming:
    """What one finished round measured: its tau, wall time and slowest worker's compute."""

    tau: int
    round_seconds: float
    compute_seconds: float


class TauPolicy(Protocol):
    # ``previous``: the decisions so far, including those replayed from a checkpoint (whose
    # timings a resumed run never saw).
    def decide(self, round_index: int, history: list[RoundTiming],
               previous: tuple[int, ...] = ()) -> int: ...


@dataclass(frozen=True)
class FixedTau:
    tau: int

    def decide(self, round_index: int, history: list[RoundTiming],
               previous: tuple[int, ...] = ()) -> int:
        return self.tau


@dataclass
class TauSchedule:
    """The tau of every round so far; decisions are appended and never changed."""

    policy: TauPolicy
    decisions: list[int] = field(default_factory=list)
    history: list[RoundTiming] = field(default_factory=list)

    def tau_for(self, round_index: int) -> int:
        if round_index < len(self.decisions):
            return self.decisions[round_index]
        if round_index != len(self.decisions):
            raise ValueError(f"round {round_index} asked before round {len(self.decisions)}")
        tau = self.policy.decide(round_index, self.history, tuple(self.decisions))
        self.decisions.append(tau)
        return tau

    def observe(self, timing: RoundTiming) -> None:
        self.history.append(timing)


def resolve_epoch_tau(config: TrainConfig, shard_sizes: Sequence[int]) -> TrainConfig:
    """``tau = "epoch"`` as a number: the steps of one pass over the smallest shard, at most
    ``EPOCH_TAU_CAP``. It depends on the row count alone, so every machine, loaded or not,
    takes the same steps; any other tau comes back unchanged."""
    if config.engine.tau != "epoch":
        return config
    one_pass = math.ceil(min(shard_sizes) / config.engine.batch_size)
    tau = max(1, min(EPOCH_TAU_CAP, one_pass))
    return replace(config, engine=replace(config.engine, tau=tau))


def work_statement(config: TrainConfig, rows: int) -> str:
    """The work a fit will do, in samples and passes over the data (a fixed tau only)."""
    engine = config.engine
    if not isinstance(engine.tau, int):
        return (f"{engine.rounds} rounds of {engine.num_workers} workers x tau {engine.tau} "
                f"steps of {engine.batch_size} rows (tau chosen from measured step times)")
    samples = engine.rounds * engine.num_workers * engine.tau * engine.batch_size
    return (f"{engine.rounds} rounds of {engine.num_workers} workers x {engine.tau} steps x "
            f"{engine.batch_size} rows = {samples:,} samples ({samples / rows:.1f} epochs of "
            f"{rows:,} rows)")
