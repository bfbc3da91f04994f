"""Shards: the block of training data one Spark partition holds, as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sparknet.errors import ConfigError

if TYPE_CHECKING:
    from sparknet.caffe.transform import TransformConfig


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """How stored features become network input: ``x = features.astype(float32) * scale``.

    Attributes:
        shape: per-example input shape, e.g. (1, 28, 28).
        num_classes: labels are integers in [0, num_classes).
        scale: multiplier applied to the stored features (1/255 for uint8 images).
        transform: a Caffe Data layer's transform_param (scale, mean, crop, mirror), applied
            to the features ``[n, *shape]`` in the workers instead of ``scale`` (which must
            then be 1); the network's input shape is the cropped shape.
    """

    shape: tuple[int, ...]
    num_classes: int
    scale: float = 1.0
    transform: TransformConfig | None = None

    def __post_init__(self) -> None:
        if not self.shape or any(d < 1 for d in self.shape):
            raise ConfigError(f"input shape {self.shape!r} is invalid: give positive dims, "
                              "e.g. (1, 28, 28)")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes} is invalid: need at least 2")
        if self.transform is not None and self.scale != 1.0:
            raise ConfigError(f"scale={self.scale} with a Caffe transform: the transform's own "
                              "scale applies; set scale=1.0")


@dataclass(frozen=True)
class Shard:
    """Features ``[n, *shape]`` (uint8 or float32, kept compact) and int64 labels ``[n]``."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_into_shards(features: np.ndarray, labels: np.ndarray, num_shards: int, *,
                      seed: int) -> list[Shard]:
    """Shuffles once with ``seed`` and deals the examples into near-equal shards."""
    order = np.random.default_rng(seed).permutation(labels.shape[0])
    return [Shard(np.ascontiguousarray(features[part]), np.ascontiguousarray(labels[part]))
            for part in np.array_split(order, num_shards)]


def contiguous_shards(features: np.ndarray, labels: np.ndarray, num_shards: int) -> list[Shard]:
    """Splits in order, without shuffling (used for evaluation data)."""
    return [Shard(f, lab) for f, lab in zip(np.array_split(features, num_shards),
                                            np.array_split(labels, num_shards), strict=True)]
