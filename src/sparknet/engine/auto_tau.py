"""Automatic tau: measure step time C and round overhead S, then pick tau so S <= 5% of a round.

The first ``probe_rounds`` rounds run ``probe_tau`` steps each. The trainer's warm-up job has
already started the workers, fetched the shards and built the networks, but the first round of
a process still pays first-use costs (the first forward and backward passes, allocator growth),
so C and S are measured on the probe rounds after it: ``C`` is the median compute time per
step of the slowest worker, ``S`` the median of (round wall time - compute time). A round then
has overhead fraction ``S / (tau*C + S)``, which is at most ``max_overhead`` when
``tau >= S*(1-f) / (f*C)``.

The decision is a pure function of the recorded timings and is made once; ``TauSchedule``
records it per round, so a resumed or repeated run replays it instead of re-measuring, and a
run resumed after the decision keeps it. (A run resumed during the probes probes again.)
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from sparknet.engine.tau import RoundTiming


def tau_for_overhead(*, step_seconds: float, overhead_seconds: float, max_overhead: float,
                     min_tau: int = 1, max_tau: int = 2000) -> int:
    """The smallest tau whose rounds spend at most ``max_overhead`` of their time in overhead."""
    if overhead_seconds <= 0:
        return min_tau
    step = max(step_seconds, 1e-9)
    needed = overhead_seconds * (1.0 - max_overhead) / (max_overhead * step)
    return max(min_tau, min(max_tau, math.ceil(needed - 1e-9)))


@dataclass(frozen=True, kw_only=True)
class AutoTau:
    """A ``TauPolicy`` that probes C and S in the first rounds and then fixes tau.

    Attributes:
        probe_tau: local steps of each probe round.
        probe_rounds: rounds run at ``probe_tau``; all but the first are measured.
        max_overhead: the largest share of a round that may go to overhead (0.05 = 5%).
        min_tau, max_tau: bounds on the chosen tau.
    """

    probe_tau: int = 10
    probe_rounds: int = 3
    max_overhead: float = 0.05
    min_tau: int = 1
    max_tau: int = 2000

    def __post_init__(self) -> None:
        if self.probe_tau < 1 or self.probe_rounds < 2:
            raise ValueError("AutoTau needs probe_tau >= 1 and probe_rounds >= 2 (round 0 is "
                             "a warm-up and is not measured)")
        if not 0 < self.max_overhead < 1:
            raise ValueError(f"max_overhead={self.max_overhead} must lie in (0, 1), e.g. 0.05")
        if not 1 <= self.min_tau <= self.max_tau:
            raise ValueError("AutoTau needs 1 <= min_tau <= max_tau")

    def decide(self, round_index: int, history: list[RoundTiming],
               previous: tuple[int, ...] = ()) -> int:
        chosen = [t for t in previous[self.probe_rounds:] if t != self.probe_tau]
        if chosen:  # decided before (this run, or the run a checkpoint came from)
            return chosen[-1]
        # This process's first round pays first-use costs; measure the ones after it.
        measured = history[1: self.probe_rounds]
        if round_index < self.probe_rounds or len(measured) < self.probe_rounds - 1:
            return self.probe_tau
        step, overhead = measure(measured)
        return tau_for_overhead(step_seconds=step, overhead_seconds=overhead,
                                max_overhead=self.max_overhead, min_tau=self.min_tau,
                                max_tau=self.max_tau)


def measure(timings: list[RoundTiming]) -> tuple[float, float]:
    """(C, S): median seconds per local step and median overhead seconds per round."""
    steps = [t.compute_seconds / t.tau for t in timings]
    overheads = [max(0.0, t.round_seconds - t.compute_seconds) for t in timings]
    return statistics.median(steps), statistics.median(overheads)
