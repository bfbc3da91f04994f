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


def state_tensors(module: nn.Module, layout: FlatLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's state as (float32 vector, int64 vector) on the module's own device."""
    state = module.state_dict()
    floats = [state[e.name].detach().reshape(-1).to(torch.float32) for e in layout.floats]
    ints = [state[e.name].detach().reshape(-1).to(torch.int64) for e in layout.ints]
    device = next(iter(state.values())).device if state else torch.device("cpu")
    return (torch.cat(floats) if floats else torch.zeros(0, device=device),
            torch.cat(ints) if ints else torch.zeros(0, dtype=torch.int64, device=device))


def flatten_state(module: nn.Module, layout: FlatLayout) -> tuple[np.ndarray, np.ndarray]:
    """Copies the module's state into (float32 buffer, int64 vector)."""
    floats, ints = state_tensors(module, layout)
    return floats.cpu().numpy(), ints.cpu().numpy()


def load_flat_state(module: nn.Module, layout: FlatLayout, floats: np.ndarray | torch.Tensor,
                    ints: np.ndarray | torch.Tensor) -> None:
    """Copies a flat buffer back into the module's parameters and buffers in place.

    The buffers go to the module's device in one copy each (none when they are already
    there) and are sliced into its tensors on the device.
    """
    state = module.state_dict()
    if not state:
        return
    device = next(iter(state.values())).device
    with torch.no_grad():
        for entries, flat in ((layout.floats, floats), (layout.ints, ints)):
            source = torch.as_tensor(flat).to(device, non_blocking=True)
            for e in entries:
                target = state[e.name]
                target.copy_(source[e.offset:e.offset + e.size].reshape(e.shape)
                             .to(target.dtype))


def flat_parameters_view(module: nn.Module, layout: FlatLayout) -> list[tuple[Entry, nn.Parameter]]:
    """The (entry, parameter) pairs of the layout that are trainable parameters."""
    params = dict(module.named_parameters())
    return [(e, params[e.name]) for e in layout.floats if e.name in params]

