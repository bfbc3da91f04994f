"""The driver's training state: one object from round to round, broadcast to checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from sparknet.averaging import OuterState, init_outer_state
from sparknet.config import TrainConfig
from sparknet.engine.local_steps import RoundState, flat_momentum
from sparknet.errors import DataError
from sparknet.flat import FlatLayout, flat_parameters_view, flatten_state
from sparknet.models.kinds import ModelKind
from sparknet.weights_dir import WeightsDir, flat_from_tensors, named_tensors

MOMENTUM_KEY = "worker_momentum"
LAGGING_FLOATS_KEY = "overlap_lagging_floats"
LAGGING_INTS_KEY = "overlap_lagging_ints"
CARRY_KEY = "overlap_carry_{:06d}"


def initial_state(model: ModelKind, seed: int) -> tuple[FlatLayout, np.ndarray, np.ndarray]:
    """The network's initial weights, a function of the seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = model.build()
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    return layout, floats, ints


def starting_state(model: ModelKind, config: TrainConfig) -> tuple[FlatLayout, TrainState]:
    """The layout and the state a run starts from: the network's initial weights (a
    function of the seed alone), or where the model kind's ``starting_point`` puts them (a
    Caffe snapshot: its weights, its iteration as the first local step, and with averaged
    momentum the snapshot's history as the workers' starting momentum)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = model.build()
    iteration = model.starting_point(config.optimizer, module)
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    state = TrainState.initial(config, floats, ints)
    if iteration == 0:
        return layout, state
    optimizer = model.local_optimizer(config.optimizer)
    made = optimizer.make(module, iteration=iteration)  # refuses a state that does not fit
    momentum = state.momentum
    if momentum is not None:
        momentum = flat_momentum(made, flat_parameters_view(module, layout),
                                 layout.num_floats, optimizer.momentum_key)
    return layout, replace(state, step_offset=iteration, momentum=momentum)


@dataclass(frozen=True)
class TrainState:
    """Weights, optimizer state and progress after ``round_index`` rounds.

    ``momentum`` is the workers' averaged momentum (momentum_policy ``average``), ``outer``
    the outer optimizer's state; the counters say how far training has come. Overlapped
    rounds (``engine.overlap``) also carry ``lagging``, the weights one round behind (where
    the next round's job starts), and ``carries``, every worker's change in the last round
    (``engine.overlap``): with them a resumed run reruns the round in flight exactly.
    """

    floats: np.ndarray
    ints: np.ndarray
    momentum: np.ndarray | None
    outer: OuterState
    round_index: int = 0
    step_offset: int = 0
    samples: int = 0
    wall_seconds: float = 0.0
    tau_decisions: tuple[int, ...] = ()
    lagging: RoundState | None = None
    carries: tuple[np.ndarray, ...] | None = None

    @classmethod
    def initial(cls, config: TrainConfig, floats: np.ndarray, ints: np.ndarray) -> TrainState:
        momentum = (np.zeros(floats.size, np.float32)
                    if config.optimizer.momentum_policy == "average" else None)
        return cls(floats, ints, momentum, init_outer_state(config.outer, floats.size))

    def for_workers(self) -> RoundState:
        """What the workers need of it: the part that is broadcast each round."""
        return RoundState(self.floats, self.ints, self.momentum)

    def to_weights_dir(self, layout: FlatLayout, meta: dict[str, Any]) -> WeightsDir:
        optimizer = dict(self.outer.tensors())
        if self.momentum is not None:
            optimizer[MOMENTUM_KEY] = self.momentum
        if self.lagging is not None:
            optimizer[LAGGING_FLOATS_KEY] = self.lagging.floats
            optimizer[LAGGING_INTS_KEY] = self.lagging.ints
        for index, carry in enumerate(self.carries or ()):
            optimizer[CARRY_KEY.format(index)] = carry
        progress = {"round": self.round_index, "step_offset": self.step_offset,
                    "samples": self.samples, "wall_seconds": self.wall_seconds,
                    "tau_decisions": list(self.tau_decisions)}
        return WeightsDir(named_tensors(layout, self.floats, self.ints), optimizer,
                          {**meta, **progress})

    @classmethod
    def from_weights_dir(cls, contents: WeightsDir, layout: FlatLayout, *,
                         origin: str) -> TrainState:
        floats, ints = flat_from_tensors(layout, contents.tensors, origin=origin)
        outer = OuterState.from_tensors({k: v for k, v in contents.optimizer.items()
                                         if k.startswith("outer_")})
        meta = contents.meta
        tensors = contents.optimizer
        lagging = None
        if LAGGING_FLOATS_KEY in tensors and LAGGING_INTS_KEY in tensors:
            lagging = RoundState(tensors[LAGGING_FLOATS_KEY], tensors[LAGGING_INTS_KEY])
        found: list[np.ndarray] = []
        while CARRY_KEY.format(len(found)) in tensors:
            found.append(tensors[CARRY_KEY.format(len(found))])
        carries = tuple(found) or None
        try:
            return cls(floats, ints, tensors.get(MOMENTUM_KEY), outer,
                       round_index=int(meta["round"]), step_offset=int(meta["step_offset"]),
                       samples=int(meta["samples"]),
                       wall_seconds=float(meta["wall_seconds"]),
                       tau_decisions=tuple(int(t) for t in meta["tau_decisions"]),
                       lagging=lagging, carries=carries)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"checkpoint {origin} has a missing or malformed progress field "
                            f"({exc!r}): resume from an earlier checkpoint") from None
