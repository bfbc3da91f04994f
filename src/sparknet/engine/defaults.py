"""The defaults that follow from the data and the optimizer, made explicit before a run.

``tau = "epoch"`` becomes a number of steps from the shard sizes, ``momentum_policy = "auto"``
becomes ``average`` or ``reset`` from the local optimizer; both depend on nothing a machine's
load can change, so a default run takes the same steps everywhere. The entry points resolve
them before logging or saving a configuration, so what a run records is what it did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from sparknet.config import EPOCH_TAU_CAP, MomentumPolicy, TrainConfig


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


def resolve_momentum_policy(config: TrainConfig, *, has_momentum: bool) -> TrainConfig:
    """``momentum_policy = "auto"`` made explicit: average where the local optimizer keeps
    one momentum buffer (``has_momentum``) and the rounds are synchronous, else reset."""
    if config.optimizer.momentum_policy != "auto":
        return config
    policy: MomentumPolicy = ("average" if has_momentum and config.engine.overlap == "off"
                              else "reset")
    return replace(config, optimizer=replace(config.optimizer, momentum_policy=policy))
