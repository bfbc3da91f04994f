"""SparkNet's time model: a round costs ``tau * C + S``; speedups to a target accuracy.

Pure functions on accuracy curves (lists of records with ``steps_per_worker``, ``round`` and
``test_accuracy``), so one curve per (K, tau, outer) answers every S and C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def first_reaching(curve: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first evaluated record whose test accuracy is at least ``target``."""
    for record in curve:
        accuracy = record.get("test_accuracy")
        if accuracy is not None and accuracy >= target:
            return record
    return None


def modelled_seconds(record: dict[str, Any], *, step_seconds: float,
                     overhead_seconds: float) -> float:
    """Wall time of the rounds up to ``record``: rounds * S + (local steps per worker) * C."""
    return record["round"] * overhead_seconds + record["steps_per_worker"] * step_seconds


def time_to_target(curve: Sequence[dict[str, Any]], target: float, *, step_seconds: float,
                   overhead_seconds: float) -> float | None:
    """Modelled seconds until the curve first reaches ``target``; None if it never does."""
    hit = first_reaching(curve, target)
    if hit is None:
        return None
    return modelled_seconds(hit, step_seconds=step_seconds, overhead_seconds=overhead_seconds)


def speedup(serial_steps: int, curve: Sequence[dict[str, Any]], target: float, *,
            step_seconds: float, overhead_seconds: float) -> float | None:
    """Serial time to target (``serial_steps * C``, no synchronisation) over parallel time."""
    parallel = time_to_target(curve, target, step_seconds=step_seconds,
                              overhead_seconds=overhead_seconds)
    if parallel is None:
        return None
    return serial_steps * step_seconds / parallel
