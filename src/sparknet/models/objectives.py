"""Objectives: the loss a worker minimises and what the network's outputs mean when scoring.

An ``Objective`` is plain, picklable data (its name) that crosses to executors in the round's
plan. Built-in objectives:

- ``multiclass``: softmax cross-entropy; labels are class indices in [0, outputs); scoring
  gives ``rawPrediction`` (logits), ``probability`` (softmax) and ``prediction`` (argmax).
- ``binary``: sigmoid binary cross-entropy on one output; labels 0 or 1; scoring gives a
  two-entry ``rawPrediction`` [-z, z] and ``probability`` [1 - p, p] as Spark's binary
  classifiers do.
- ``multilabel``: sigmoid binary cross-entropy per output; labels are vectors of 0/1, one per
  output; ``prediction`` is the vector of (probability > 0.5).
- ``mse``, ``l1``, ``huber`` (delta 1): regression on real targets, one per output (a scalar
  label column for one output); ``prediction`` is the network's output (a double for one
  output, a vector otherwise).
- ``package.module:function``: a user's loss factory; ``function()`` returns a callable
  ``loss(outputs, targets) -> scalar tensor`` (the batch mean). Targets are float32
  ``[batch, width]`` (width 1 for a scalar label column); scoring is as for regression.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sparknet.errors import ConfigError
from sparknet.models.kinds import import_callable

BUILTIN_OBJECTIVES = ("multiclass", "binary", "multilabel", "mse", "l1", "huber")
CLASSIFIERS = ("multiclass", "binary", "multilabel")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A resolved objective reference (a built-in name or ``module:function``)."""

    name: str = "multiclass"

    @property
    def is_classifier(self) -> bool:
        return self.name in CLASSIFIERS

    @property
    def index_labels(self) -> bool:
        """Labels are integer class indices (stored int64 ``[n]``), not float targets."""
        return self.name == "multiclass"

    @property
    def binary_targets(self) -> bool:
        """Every target value must be 0 or 1."""
        return self.name in ("binary", "multilabel")

    @property
    def vector_labels(self) -> bool | None:
        """True: the label column must hold vectors; False: scalars; None: either."""
        if self.name in ("multiclass", "binary"):
            return False
        return True if self.name == "multilabel" else None

    def label_width(self, outputs: int, *, vector_column: bool) -> int:
        """Width of the stored float targets (0: class indices)."""
        if self.index_labels:
            return 0
        return outputs if vector_column else 1

    def check_outputs(self, outputs: int, *, network: str) -> None:
        """The network's number of outputs fits this objective (one clear line if not)."""
        if self.name == "multiclass" and outputs < 2:
            raise ConfigError(f"network {network!r} has {outputs} output for objective "
                              "'multiclass', which needs [batch, classes] logits with classes "
                              ">= 2: use objective 'binary' for one output")
        if self.name == "binary" and outputs != 1:
            raise ConfigError(f"network {network!r} has {outputs} outputs but objective "
                              "'binary' needs one logit per row: use objective 'multiclass' "
                              "(or 'multilabel') for several outputs")

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch."""
        name = self.name
        if name == "multiclass":
            return F.cross_entropy(outputs, targets)
        if name in ("binary", "multilabel"):
            return F.binary_cross_entropy_with_logits(outputs, targets)
        if name == "mse":
            return F.mse_loss(outputs, targets)
        if name == "l1":
            return F.l1_loss(outputs, targets)
        if name == "huber":
            return F.huber_loss(outputs, targets, delta=1.0)
        return user_loss(name)(outputs, targets)

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Rows predicted exactly right (classifiers), else None."""
        if self.name == "multiclass":
            return (outputs.argmax(1) == targets).sum()
        if self.binary_targets:
            return ((outputs > 0) == (targets > 0.5)).all(dim=1).sum()
        return None


MULTICLASS = Objective("multiclass")


def resolve_objective(name: str) -> Objective:
    """Checks an objective reference on the driver (imports a user's factory) and wraps it."""
    if name in BUILTIN_OBJECTIVES:
        return Objective(name)
    if ":" not in name:
        raise ConfigError(f"objective={name!r} is unknown: use one of "
                          f"{', '.join(BUILTIN_OBJECTIVES)} or a loss factory "
                          "'package.module:function'")
    user_loss(name)
    return Objective(name)


@functools.lru_cache(maxsize=16)
def user_loss(ref: str) -> LossFn:
    """The loss a user's factory returns, built once per process."""
    factory = import_callable(ref, what="loss factory", returns="loss(outputs, targets)")
    loss = factory()
    if not callable(loss):
        raise ConfigError(f"loss factory {ref!r} returned {type(loss).__name__}, not a "
                          "callable loss(outputs, targets)")
    return loss  # type: ignore[no-any-return,unused-ignore]


@dataclass(frozen=True)
class ScoreWidths:
    """How many values each scoring output has (0: the column is not written)."""

    raw: int
    probability: int
    prediction: int
    vector_prediction: bool

    @property
    def total(self) -> int:
        return self.raw + self.probability + self.prediction


def score_widths(objective: Objective, outputs: int) -> ScoreWidths:
    if objective.name == "multiclass":
        return ScoreWidths(outputs, outputs, 1, False)
    if objective.name == "binary":
        return ScoreWidths(2, 2, 1, False)
    if objective.name == "multilabel":
        return ScoreWidths(outputs, outputs, outputs, True)
    return ScoreWidths(0, 0, outputs, outputs > 1)


def score_rows(objective: Objective, outputs: np.ndarray) -> np.ndarray:
    """Network outputs ``[n, w]`` -> ``[n, total]``: raw, probability, prediction side by side."""
    z = outputs.astype(np.float64)
    if objective.name == "multiclass":
        shifted = np.exp(z - z.max(axis=1, keepdims=True))
        probability = shifted / shifted.sum(axis=1, keepdims=True)
        prediction = probability.argmax(axis=1)[:, None].astype(np.float64)
        return np.concatenate([z, probability, prediction], axis=1)
    if objective.name == "binary":
        p = _sigmoid(z)
        return np.concatenate([-z, z, 1 - p, p, (p > 0.5).astype(np.float64)], axis=1)
    if objective.name == "multilabel":
        p = _sigmoid(z)
        return np.concatenate([z, p, (p > 0.5).astype(np.float64)], axis=1)
    return z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
    return out
