"""Combining worker results in a fixed order: pure, so sums are bit-reproducible."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from sparknet.averaging import EncodedDelta, decode_delta, outer_step
from sparknet.config import OuterConfig
from sparknet.engine.local_steps import WorkerResult
from sparknet.engine.state import TrainState


def _dense(delta: EncodedDelta | np.ndarray) -> np.ndarray:
    return decode_delta(delta) if isinstance(delta, EncodedDelta) else delta


def combine(a: WorkerResult, b: WorkerResult) -> WorkerResult:
    """``a + b``, summing float32 deltas; callers fix the order (by partition index)."""
    momentum = None
    if a.momentum_sum is not None and b.momentum_sum is not None:
        momentum = a.momentum_sum + b.momentum_sum
    return WorkerResult(
        delta=_dense(a.delta) + _dense(b.delta),
        weight=a.weight + b.weight,
        loss_sum=a.loss_sum + b.loss_sum,
        correct=a.correct + b.correct,
        samples=a.samples + b.samples,
        ints_max=np.maximum(a.ints_max, b.ints_max),
        momentum_sum=momentum,
        bytes_sent=a.bytes_sent + b.bytes_sent,
        workers=a.workers + b.workers,
        compute_seconds=max(a.compute_seconds, b.compute_seconds),
    )


def combine_in_order(indexed: Iterable[tuple[int, WorkerResult]]) -> WorkerResult:
    """Sums results sorted by their partition index, whatever order they arrived in."""
    ordered = [result for _, result in sorted(indexed, key=lambda item: item[0])]
    total = ordered[0]
    for result in ordered[1:]:
        total = combine(total, result)
    if isinstance(total.delta, EncodedDelta):
        total.delta = decode_delta(total.delta)
    return total


def mean_delta(total: WorkerResult) -> np.ndarray:
    assert isinstance(total.delta, np.ndarray)
    return (total.delta / np.float32(total.weight)).astype(np.float32)


def tree_group(index: int, fan_in: int) -> int:
    """The group a result joins at the next level of a tree sum: ``fan_in`` consecutive
    indices per group. Every runner's tree sum uses this rule, so their sums are the same."""
    return index // fan_in


def tree_levels(count: int, fan_in: int) -> list[int]:
    """How many groups each level of the tree sum has, until at most ``fan_in`` remain for the
    driver (none when ``count <= fan_in``)."""
    levels = []
    while count > fan_in:
        count = math.ceil(count / fan_in)
        levels.append(count)
    return levels


def tree_combine(results: list[WorkerResult], *, fan_in: int) -> WorkerResult:
    """The tree sum in one process: the Spark runners' groups, summed in the same order."""
    level = list(enumerate(results))
    for _ in tree_levels(len(results), fan_in):
        groups: dict[int, list[tuple[int, WorkerResult]]] = {}
        for index, result in level:
            groups.setdefault(tree_group(index, fan_in), []).append((index, result))
        level = [(key, combine_in_order(members)) for key, members in sorted(groups.items())]
    return combine_in_order(level)


def apply_round(config: OuterConfig, state: TrainState, total: WorkerResult,
                param_mask: np.ndarray) -> TrainState | None:
    """The next driver state from a round's ordered sum; None when the update is NaN/inf.

    Only the weights and optimizer state change here; the caller advances the counters.
    """
    change = mean_delta(total)
    if not (np.isfinite(change).all() and math.isfinite(total.loss_sum)):
        return None
    floats, outer = outer_step(config, state.floats, change, state.outer, param_mask)
    momentum = state.momentum
    if momentum is not None and total.momentum_sum is not None:
        momentum = (total.momentum_sum / np.float32(total.weight)).astype(np.float32)
    return replace(state, floats=floats, ints=total.ints_max, momentum=momentum, outer=outer)
