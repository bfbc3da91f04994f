"""Caffe's solver snapshots (``.solverstate``, a binary SolverState): read one into a
CaffeSolver to go on from Caffe's iteration and momentum, or write one Caffe restores.

A SolverState holds the iteration, the caffemodel it belongs to, the multistep position
and the solver's ``history`` blobs, one per learnable blob of the net in Caffe's order (layer
by layer, blob by blob, each shared blob once at its owner); AdaDelta and Adam append a
second set (AdaDelta's update history, Adam's second moment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparknet.caffe import schema
from sparknet.caffe.solver import CaffeSolver, SolverConfig
from sparknet.caffe.weights import array_to_blob, blob_to_array
from sparknet.errors import CaffeFormatError

# The second set of history blobs of each solver type: CaffeSolver's state key for it.
_SECOND = {"AdaDelta": "update_history", "Adam": "second"}


@dataclass(frozen=True)
class SolverState:
    """A parsed ``.solverstate``."""

    iteration: int
    learned_net: str
    current_step: int
    history: tuple[np.ndarray, ...]


def read_solverstate(path: str | Path) -> SolverState:
    """Parse a binary ``.solverstate`` (one line naming the problem when it is not one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CaffeFormatError(f"cannot read {path}: {err.strerror}; check the path") from None
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise CaffeFormatError(f"{path} is an HDF5 solver state, which sparknet does not "
                               "read; snapshot with snapshot_format: BINARYPROTO (Caffe's "
                               "default)")
    message = schema.message_class("SolverState")()
    try:
        message.ParseFromString(data)
    except Exception as err:  # DecodeError or RuntimeError, by protobuf backend
        raise CaffeFormatError(f"{path} is not a Caffe .solverstate ({type(err).__name__}); "
                               "give the file Caffe's snapshot wrote") from None
    history = tuple(blob_to_array(blob, where=f"{path} history {i}")
                    for i, blob in enumerate(message.history))
    return SolverState(iteration=int(message.iter), learned_net=message.learned_net,
                       current_step=int(message.current_step), history=history)


def learned_net_path(path: str | Path, state: SolverState) -> Path | None:
    """The caffemodel a snapshot names (``learned_net``, None when it names none): where
    Caffe opens it (relative to the working directory), else the file of that name beside
    the .solverstate (a snapshot moved with its caffemodel)."""
    if not state.learned_net:
        return None
    named = Path(state.learned_net)
    beside = Path(path).parent / named.name
    for candidate in (named, beside):
        if candidate.is_file():
            return candidate.absolute()
    raise CaffeFormatError(f"{path} names its weights {state.learned_net}, which exists neither "
                           f"there nor beside it ({beside}); put the caffemodel Caffe wrote "
                           "with the snapshot beside the .solverstate")


def check_schedule(config: SolverConfig, state: SolverState, *, source: str) -> None:
    """Refuse (one line) a snapshot whose multistep position is not where this solver's
    ``stepvalue`` puts its iteration: Caffe would go on from the snapshot's position, the
    CaffeSolver from its iteration."""
    if config.lr_policy != "multistep":
        return
    expected = sum(1 for value in config.stepvalue if state.iteration > value)
    if state.current_step != expected:
        raise CaffeFormatError(
            f"{source} is at multistep step {state.current_step} after {state.iteration} "
            f"iterations, but this solver's stepvalue {list(config.stepvalue)} gives step "
            f"{expected}: continue with the solver the snapshot was taken with")


def _caffe_order(net: nn.Module) -> list[nn.Parameter]:
    # named_parameters lists each shared blob once, at its first (owning) layer, in layer
    # order: Caffe's learnable_params order. BatchNorm statistics are in it too (Caffe keeps
    # them as learnable blobs with rate 0).
    return [p for _, p in net.named_parameters(remove_duplicate=True)]


def restore_solverstate(solver: CaffeSolver, net: nn.Module, state: SolverState) -> None:
    """Continue from a Caffe snapshot: the solver's iteration and history buffers become the
    snapshot's (the net's weights come from its caffemodel, loaded separately)."""
    params = _caffe_order(net)
    sets = 2 if solver.config.type in _SECOND else 1
    if len(state.history) != sets * len(params):
        raise CaffeFormatError(
            f"the solverstate holds {len(state.history)} history blobs, but a "
            f"{solver.config.type} solver of this net has {sets * len(params)} "
            f"({len(params)} learnable blobs); use the snapshot of this net and solver type")
    keys = ["history", *([_SECOND[solver.config.type]] if sets == 2 else [])]
    for k, key in enumerate(keys):
        for i, param in enumerate(params):
            value = state.history[k * len(params) + i]
            if value.size != param.numel():
                raise CaffeFormatError(f"solverstate history blob {k * len(params) + i} has "
                                       f"{value.size} values, the net's blob {i} "
                                       f"{param.numel()}")
            solver.state[param][key] = torch.from_numpy(
                np.array(value, dtype=np.float32).reshape(tuple(param.shape)))
    solver.iteration = state.iteration


def solverstate_message(solver: CaffeSolver, net: nn.Module, *, learned_net: str = "") -> Any:
    """The SolverState Caffe would snapshot for this solver and net (history blobs absent
    from the solver, such as those of blobs it never stepped, are zeros)."""
    params = _caffe_order(net)
    keys = ["history", *([_SECOND[solver.config.type]] if solver.config.type in _SECOND
                         else [])]
    message = schema.message_class("SolverState", raw_blobs=True)(
        iter=solver.iteration, learned_net=learned_net,
        current_step=_current_step(solver))
    for key in keys:
        for param in params:
            value = solver.state.get(param, {}).get(key)
            array = (value if value is not None else torch.zeros_like(param)).detach()
            array_to_blob(array.cpu().numpy(), message.history.add())
    return message


def write_solverstate(solver: CaffeSolver, net: nn.Module, path: str | Path, *,
                      learned_net: str = "") -> None:
    """Write ``path`` as Caffe's ``.solverstate`` for this solver and net."""
    message = solverstate_message(solver, net, learned_net=learned_net)
    Path(path).write_bytes(message.SerializeToString())


def _current_step(solver: CaffeSolver) -> int:
    # Caffe's multistep position: how many step values the iteration has passed.
    if solver.config.lr_policy != "multistep":
        return 0
    return sum(1 for value in solver.config.stepvalue if solver.iteration > value)
