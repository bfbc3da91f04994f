"""How many local steps each round runs: a recorded schedule that resumed runs replay.

The trainer asks ``TauSchedule.tau_for(round)`` before each round and records the answer.
Decisions already in the schedule (from a checkpoint or an earlier run) are replayed, so a
resumed run takes the same steps as an undisturbed one; new rounds ask the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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

