"""Shards: the block of training data one Spark partition holds, as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from sparknet.errors import ConfigError, DataError

# How a label column holds one example's label: one number, or a vector of numbers.
LabelForm = Literal["number", "vector"]


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What the stored features are; the model kind turns them into network input.

    Attributes:
        shape: per-example shape of the stored features, e.g. (1, 28, 28).
        num_classes: the network's number of outputs; with ``label_width`` 0, labels are
            integers in [0, num_classes).
        label_width: 0 for class-index labels (int64 ``[n]``), else the width of float32
            targets ``[n, label_width]`` (regression, binary and multi-label objectives).
        binary_targets: float targets must be 0 or 1.
        scale: multiplier for the stored features (1/255 for uint8 images), used by models
            whose kind has no input preparation of its own (a Caffe net's Data layer
            transform_param replaces it).
        class_names: class i's name, when the data has names (an image folder's class
            folders); saved with a run so that scoring can name its predictions.
        row_weights: each stored label row ends with one more float32 value, the row's
            training weight (``weightCol``); class indices are then stored as float32 too
            (``pack_row_weights``). Losses become weighted means (``Objective.weighted_loss``).
    """

    shape: tuple[int, ...]
    num_classes: int
    scale: float = 1.0
    label_width: int = 0
    binary_targets: bool = False
    class_names: tuple[str, ...] = ()
    row_weights: bool = False

    @property
    def stored_label_width(self) -> int:
        """The width of the stored labels: 0 for int64 class indices, else float32 columns."""
        if not self.row_weights:
            return self.label_width
        return max(1, self.label_width) + 1

    def __post_init__(self) -> None:
        if not self.shape or any(d < 1 for d in self.shape):
            raise ConfigError(f"input shape {self.shape!r} is invalid: give positive dims, "
                              "e.g. (1, 28, 28)")
        if self.num_classes < (2 if self.label_width == 0 else 1):
            raise ConfigError(f"num_classes={self.num_classes} is invalid: class-index labels "
                              "need at least 2 outputs")
        if self.class_names and len(self.class_names) > max(2, self.num_classes):
            raise ConfigError(f"{len(self.class_names)} class names for a network with "
                              f"{self.num_classes} outputs: give at most one name per output")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (a run's ``final/state.json`` records it)."""
        return {"shape": list(self.shape), "num_classes": self.num_classes, "scale": self.scale,
                "label_width": self.label_width, "binary_targets": self.binary_targets,
                "class_names": list(self.class_names), "row_weights": self.row_weights}

    @classmethod
    def from_dict(cls, data: Any, *, origin: str) -> InputSpec:
        try:
            return cls(shape=tuple(int(d) for d in data["shape"]),
                       num_classes=int(data["num_classes"]), scale=float(data["scale"]),
                       label_width=int(data["label_width"]),
                       binary_targets=bool(data["binary_targets"]),
                       class_names=tuple(str(n) for n in data["class_names"]),
                       row_weights=bool(data.get("row_weights", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{origin}: the input description is malformed ({exc!r}): the run "
                            "directory was changed") from None


@dataclass(frozen=True)
class Shard:
    """Features ``[n, *shape]`` (uint8 or float32, kept compact) and labels: int64 class
    indices ``[n]`` or float32 targets ``[n, width]``."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, index: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """(stored features, labels) of the rows ``index``; streamed shards read them the
        same way from their file (``sparknet.data.placements.streamed.StreamedShard``)."""
        return self.features[index], self.labels[index]


class ShardRows(Protocol):
    """What a worker reads a shard through: in memory (``Shard``) or streamed from a file."""

    def __len__(self) -> int: ...

    def rows(self, index: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]: ...


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


def pack_row_weights(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Labels (class indices ``[n]`` or targets ``[n, width]``) and row weights ``[n]`` ->
    the stored float32 ``[n, width + 1]`` (class indices as floats, exact below 2**24)."""
    columns = labels.reshape(len(labels), -1).astype(np.float32)
    return np.concatenate([columns, weights.astype(np.float32).reshape(-1, 1)], axis=1)
