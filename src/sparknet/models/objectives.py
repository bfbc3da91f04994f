"""Objectives: the loss a worker minimises and what the network's outputs mean.

An ``Objective`` is plain, picklable data (its name; the behaviour is its class) that crosses
to executors in the round's plan. Each objective says, in its own class: its loss, the labels
it takes (class indices or float targets, 0/1 or real, one number or a vector per row), the
number of outputs it needs, how many rows it got right, the score columns it writes, whether
a prediction names a class, and its head in a serving (ONNX) graph. The rest of sparknet asks
the objective and never compares names. Built-in objectives (``BUILTIN``):

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

A new objective is one subclass here and its entry in ``BUILTIN``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from sparknet.data.shards import LabelForm
from sparknet.errors import ConfigError, DataError
from sparknet.models.references import import_callable, trust

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


@dataclass(frozen=True)
class Objective:
    """A resolved objective reference; subclasses are the objectives.

    The defaults are those of regression on float targets: no accuracy, no classes, the
    network's output is the prediction. ``name`` is the reference it was resolved from.
    """

    name: str

    # The label column: one number per row, a vector per row, or either.
    label_column: ClassVar[LabelForm | Literal["either"]] = "either"
    # What the labels must be, for error messages ("needs ...").
    label_doc: ClassVar[str] = ("numeric targets (a number, an ML Vector or array<double> "
                                "per row)")
    # Labels are integer class indices (stored int64 ``[n]``), not float targets.
    index_labels: ClassVar[bool] = False
    # Every target value must be 0 or 1.
    binary_targets: ClassVar[bool] = False
    # Rows can be right or wrong (``correct``), so accuracy is reported.
    is_classifier: ClassVar[bool] = False

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch."""
        raise NotImplementedError

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each row's loss ``[batch]`` (its mean is ``loss``), for row weights."""
        raise NotImplementedError

    def check_row_weights(self) -> None:
        """Row weights need each row's loss, which only the built-in objectives give."""

    def weighted_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
        """The weighted mean of the rows' losses, as PyTorch's class-weighted losses take it
        (sum of w * loss over sum of w); a batch whose weights are all 0 contributes 0."""
        total = weights.sum()
        return (self.row_losses(outputs, targets) * weights).sum() / total.clamp_min(
            torch.finfo(total.dtype).tiny)

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Rows predicted exactly right (classifiers), else None."""
        return None

    def check_outputs(self, outputs: int, *, network: str) -> None:
        """The network's number of outputs fits this objective (one clear line if not)."""

    def check_label_column(self, form: LabelForm, *, column: str, type_name: str) -> None:
        """The label column's form (one number or a vector per row) fits this objective."""
        if self.label_column not in ("either", form):
            raise DataError(f"label column {column!r} has type {type_name}: objective "
                            f"{self.name!r} needs {self.label_doc}")

    def label_width(self, outputs: int, *, vector_column: bool, column: str) -> int:
        """Width of the stored float targets (0: class indices), checked against the network."""
        if self.index_labels:
            return 0
        if not vector_column and outputs != 1:
            raise ConfigError(f"label column {column!r} holds one number per row but the "
                              f"network has {outputs} outputs: for objective {self.name!r} "
                              "give a network with one output, or vector labels as wide as "
                              "its output")
        return outputs if vector_column else 1

    def class_count(self, outputs: int) -> int:
        """How many classes a prediction names (0: none, so no class names or
        ``predictedLabel``)."""
        return 0

    def score_widths(self, outputs: int) -> ScoreWidths:
        return ScoreWidths(0, 0, outputs, outputs > 1)

    def score_rows(self, outputs: np.ndarray) -> np.ndarray:
        """Network outputs ``[n, w]`` -> ``[n, total]``: raw, probability, prediction side by
        side, as ``score_widths`` lays them out."""
        return outputs.astype(np.float64)

    def serving(self, logits: torch.Tensor) -> torch.Tensor:
        """The serving graph's ``probability`` output from the network's (torch ops only)."""
        return logits


@dataclass(frozen=True)
class Multiclass(Objective):
    label_column = "number"
    label_doc = ("one number per row (a class index: integers or integral doubles); index "
                 "string labels with pyspark.ml.feature.StringIndexer first")
    index_labels = True
    is_classifier = True

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, reduction="none")

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        return (outputs.argmax(1) == targets).sum()

    def check_outputs(self, outputs: int, *, network: str) -> None:
        if outputs < 2:
            raise ConfigError(f"network {network!r} has {outputs} output for objective "
                              f"{self.name!r}, which needs [batch, classes] logits with "
                              "classes >= 2: use objective 'binary' for one output")

    def class_count(self, outputs: int) -> int:
        return outputs

    def score_widths(self, outputs: int) -> ScoreWidths:
        return ScoreWidths(outputs, outputs, 1, False)

    def score_rows(self, outputs: np.ndarray) -> np.ndarray:
        z = outputs.astype(np.float64)
        shifted = np.exp(z - z.max(axis=1, keepdims=True))
        probability = shifted / shifted.sum(axis=1, keepdims=True)
        prediction = probability.argmax(axis=1)[:, None].astype(np.float64)
        return np.concatenate([z, probability, prediction], axis=1)

    def serving(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)


@dataclass(frozen=True)
class _SigmoidCrossEntropy(Objective):
    """Independent 0/1 targets, one per output: the shared part of binary and multilabel."""

    binary_targets = True
    is_classifier = True

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _per_row(F.binary_cross_entropy_with_logits(outputs, targets, reduction="none"))

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        return ((outputs > 0) == (targets > 0.5)).all(dim=1).sum()

    def serving(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


@dataclass(frozen=True)
class Binary(_SigmoidCrossEntropy):
    label_column = "number"
    label_doc = "one number per row (0 or 1)"

    def check_outputs(self, outputs: int, *, network: str) -> None:
        if outputs != 1:
            raise ConfigError(f"network {network!r} has {outputs} outputs but objective "
                              f"{self.name!r} needs one logit per row: use objective "
                              "'multiclass' (or 'multilabel') for several outputs")

    def class_count(self, outputs: int) -> int:
        return 2

    def score_widths(self, outputs: int) -> ScoreWidths:
        return ScoreWidths(2, 2, 1, False)

    def score_rows(self, outputs: np.ndarray) -> np.ndarray:
        z = outputs.astype(np.float64)
        p = _sigmoid(z)
        return np.concatenate([-z, z, 1 - p, p, (p > 0.5).astype(np.float64)], axis=1)


@dataclass(frozen=True)
class Multilabel(_SigmoidCrossEntropy):
    label_column = "vector"
    label_doc = ("a vector of 0/1 targets per row (an ML Vector or array<double>); use "
                 "objective 'multiclass' or 'binary' for one label per row")

    def score_widths(self, outputs: int) -> ScoreWidths:
        return ScoreWidths(outputs, outputs, outputs, True)

    def score_rows(self, outputs: np.ndarray) -> np.ndarray:
        z = outputs.astype(np.float64)
        p = _sigmoid(z)
        return np.concatenate([z, p, (p > 0.5).astype(np.float64)], axis=1)


@dataclass(frozen=True)
class MSE(Objective):
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _per_row(F.mse_loss(outputs, targets, reduction="none"))


@dataclass(frozen=True)
class L1(Objective):
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(outputs, targets)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _per_row(F.l1_loss(outputs, targets, reduction="none"))


@dataclass(frozen=True)
class Huber(Objective):
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(outputs, targets, delta=1.0)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _per_row(F.huber_loss(outputs, targets, delta=1.0, reduction="none"))


@dataclass(frozen=True)
class UserLoss(Objective):
    """A user's loss factory ``package.module:function`` (the name); regression otherwise.

    Only the name travels: each process imports the factory the first time it needs the loss,
    so scoring a saved model never imports the module a file names."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return user_loss(self.name)(outputs, targets)

    def check_row_weights(self) -> None:
        raise ConfigError(f"weightCol needs each row's loss, which the loss factory "
                          f"{self.name!r} does not give: use a built-in objective "
                          f"({', '.join(BUILTIN)}) or leave weightCol unset")


def _per_row(elements: torch.Tensor) -> torch.Tensor:
    """Element losses ``[batch, ...]`` -> each row's mean ``[batch]``."""
    return elements.reshape(elements.shape[0], -1).mean(dim=1)


# The one table of built-in objectives: name -> class.
BUILTIN: dict[str, type[Objective]] = {
    "multiclass": Multiclass,
    "binary": Binary,
    "multilabel": Multilabel,
    "mse": MSE,
    "l1": L1,
    "huber": Huber,
}
MULTICLASS: Objective = Multiclass("multiclass")


def objective_named(name: str) -> Objective:
    """The objective a name stands for, importing nothing (a loss factory is imported only
    when its loss is first computed): for names read back from files."""
    if name in BUILTIN:
        return BUILTIN[name](name)
    if ":" not in name:
        raise ConfigError(f"objective={name!r} is invalid: use one of {', '.join(BUILTIN)} "
                          "or a loss factory 'package.module:function'")
    return UserLoss(name)


def resolve_objective(name: str) -> Objective:
    """Checks an objective reference on the driver (imports a user's factory) and resolves it.

    The caller's code names it: files may name it afterwards (``check_file_references``)."""
    objective = objective_named(name)
    if isinstance(objective, UserLoss):
        user_loss(name)
        trust(name)
    return objective


@functools.lru_cache(maxsize=16)
def user_loss(ref: str) -> LossFn:
    """The loss a user's factory returns, built once per process."""
    factory = import_callable(ref, what="loss factory", returns="loss(outputs, targets)")
    loss = factory()
    if not callable(loss):
        raise ConfigError(f"loss factory {ref!r} returned {type(loss).__name__}, not a "
                          "callable loss(outputs, targets)")
    return loss  # type: ignore[no-any-return,unused-ignore]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
    return out
