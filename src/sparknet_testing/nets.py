"""Small tabular networks and a user loss, importable on executors as ``sparknet_testing.nets``.

They stand in for a user's own module in tests and examples: ``mlp`` takes keyword arguments
(the ``networkArgs`` Param), ``MLP`` is an ``nn.Module`` class, ``mse_loss`` a loss factory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """inputs -> hidden (ReLU) -> outputs."""

    def __init__(self, inputs: int = 30, hidden: int = 16, outputs: int = 2) -> None:
        super().__init__()
        self.hidden = nn.Linear(inputs, hidden)
        self.out = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(torch.flatten(x, 1))))


def mlp(inputs: int = 30, hidden: int = 16, outputs: int = 2) -> nn.Module:
    return MLP(inputs, hidden, outputs)


def mse_loss() -> object:
    """A user loss factory: the batch mean of squared errors (equal to objective 'mse')."""
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets)

    return loss
