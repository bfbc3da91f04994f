"""A network's state as one flat float32 buffer, the unit the engine broadcasts and averages.

All floating-point tensors of the state dict (parameters and buffers such as BatchNorm running
statistics) go into the flat buffer, in state-dict order. Integer buffers (BatchNorm's
``num_batches_tracked``) are not averaged: they travel in a separate int64 vector and the
driver keeps the element-wise maximum across workers, which for step counters every worker
advances equally is simply the common value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Entry:
    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


@dataclass(frozen=True)
class FlatLayout:
    """Where each state-dict tensor lives in the flat float buffer and the int vector."""

    floats: tuple[Entry, ...]
    ints: tuple[Entry, ...]

    @property
    def num_floats(self) -> int:
        return sum(e.size for e in self.floats)

    @property
    def num_ints(self) -> int:
        return sum(e.size for e in self.ints)

    @classmethod
    def of(cls, module: nn.Module) -> FlatLayout:
        floats: list[Entry] = []
        ints: list[Entry] = []
        float_offset = int_offset = 0
        for name, tensor in module.state_dict().items():
            size = tensor.numel()
            if tensor.is_floating_point():
                floats.append(Entry(name, tuple(tensor.shape), float_offset, size))
                float_offset += size
            else:
                ints.append(Entry(name, tuple(tensor.shape), int_offset, size))
                int_offset += size
        return cls(tuple(floats), tuple(ints))


def flatten_state(module: nn.Module, layout: FlatLayout) -> tuple[np.ndarray, np.ndarray]:
    """Copies the module's state into (float32 buffer, int64 vector)."""
    state = module.state_dict()
    floats = np.empty(layout.num_floats, dtype=np.float32)
    ints = np.empty(layout.num_ints, dtype=np.int64)
    for e in layout.floats:
        floats[e.offset:e.offset + e.size] = (
            state[e.name].detach().reshape(-1).to("cpu", torch.float32).numpy())
    for e in layout.ints:
        ints[e.offset:e.offset + e.size] = state[e.name].detach().reshape(-1).cpu().numpy()
    return floats, ints


def load_flat_state(module: nn.Module, layout: FlatLayout, floats: np.ndarray,
                    ints: np.ndarray) -> None:
    """Copies a flat buffer back into the module's parameters and buffers in place."""
    state = module.state_dict()
    with torch.no_grad():
        for e in layout.floats:
            target = state[e.name]
            source = torch.from_numpy(floats[e.offset:e.offset + e.size]).reshape(e.shape)
            target.copy_(source.to(target.dtype))
        for e in layout.ints:
            target = state[e.name]
            source = torch.from_numpy(ints[e.offset:e.offset + e.size]).reshape(e.shape)
            target.copy_(source.to(target.dtype))


def flat_parameters_view(module: nn.Module, layout: FlatLayout) -> list[tuple[Entry, nn.Parameter]]:
    """The (entry, parameter) pairs of the layout that are trainable parameters."""
    params = dict(module.named_parameters())
    return [(e, params[e.name]) for e in layout.floats if e.name in params]

