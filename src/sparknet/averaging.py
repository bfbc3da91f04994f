"""Pure aggregation and outer optimizers on flat float32 buffers; nothing here knows Spark.

A round's workers each report the change of their weights, ``delta_k = w_k - w``. The driver
sums the (optionally weighted) deltas in a fixed order, divides by the total weight, and hands
the mean change to an outer optimizer:

- ``average``/``weighted``: ``w <- w + mean_delta`` (SparkNet's model averaging);
- ``nesterov``: the mean change is an outer gradient ``g = -mean_delta``; a Nesterov momentum
  step ``m <- mu*m + g; w <- w - lr*(g + mu*m)`` is applied to the trainable parameters, while
  buffers (BatchNorm statistics) are plainly averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sparknet.config import Compression, OuterConfig

INT8_CHUNK = 4096


@dataclass(frozen=True)
class EncodedDelta:
    """A worker's weight change as it travels back to the driver."""

    kind: Compression
    data: np.ndarray
    scales: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + (0 if self.scales is None else self.scales.nbytes))


def encode_delta(delta: np.ndarray, kind: Compression) -> EncodedDelta:
    """Compresses a float32 delta: bf16 halves it, int8 with a scale per chunk quarters it."""
    if kind == "none":
        return EncodedDelta("none", delta.astype(np.float32, copy=False))
    if kind == "bf16":
        bits = torch.from_numpy(np.ascontiguousarray(delta, dtype=np.float32)).to(torch.bfloat16)
        return EncodedDelta("bf16", bits.view(torch.int16).numpy().copy())
    padded = _pad_to_chunks(delta.astype(np.float32, copy=False))
    chunks = padded.reshape(-1, INT8_CHUNK)
    scales = np.abs(chunks).max(axis=1) / 127.0
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    quantised = np.clip(np.rint(chunks / safe[:, None]), -127, 127).astype(np.int8)
    return EncodedDelta("int8", quantised.reshape(-1)[: delta.size].copy(),
                        scales.astype(np.float32))


def decode_delta(encoded: EncodedDelta) -> np.ndarray:
    """The float32 delta an encoding stands for."""
    if encoded.kind == "none":
        return encoded.data
    if encoded.kind == "bf16":
        bits = torch.from_numpy(encoded.data).view(torch.bfloat16)
        return bits.to(torch.float32).numpy()
    assert encoded.scales is not None
    padded = _pad_to_chunks(encoded.data.astype(np.float32))
    values = padded.reshape(-1, INT8_CHUNK) * encoded.scales[:, None]
    return values.reshape(-1)[: encoded.data.size].astype(np.float32)


def _pad_to_chunks(values: np.ndarray) -> np.ndarray:
    remainder = (-values.size) % INT8_CHUNK
    return np.concatenate([values, np.zeros(remainder, values.dtype)]) if remainder else values


@dataclass(frozen=True)
class OuterState:
    """State the outer optimizer carries across rounds (part of every checkpoint)."""

    momentum: np.ndarray | None = None

    def tensors(self) -> dict[str, np.ndarray]:
        return {} if self.momentum is None else {"outer_momentum": self.momentum}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> OuterState:
        return cls(momentum=tensors.get("outer_momentum"))


def init_outer_state(config: OuterConfig, num_floats: int) -> OuterState:
    if config.name == "nesterov":
        return OuterState(momentum=np.zeros(num_floats, dtype=np.float32))
    return OuterState()


def outer_step(config: OuterConfig, weights: np.ndarray, mean_delta: np.ndarray,
               state: OuterState, param_mask: np.ndarray) -> tuple[np.ndarray, OuterState]:
    """Applies the outer optimizer; returns new weights and state, inputs are not modified."""
    if config.name in ("average", "weighted"):
        return weights + mean_delta, state
    assert state.momentum is not None
    grad = -mean_delta
    momentum = config.momentum * state.momentum + grad
    step = config.lr * (grad + config.momentum * momentum)
    # Buffers (running statistics) are not gradients: they are plainly averaged.
    new_weights = np.where(param_mask, weights - step, weights + mean_delta).astype(np.float32)
    momentum = np.where(param_mask, momentum, 0.0).astype(np.float32)
    return new_weights, OuterState(momentum=momentum)
