"""Caffe 1.0 loss layers beyond SoftmaxWithLoss and EuclideanLoss: SigmoidCrossEntropyLoss,
HingeLoss, MultinomialLogisticLoss, InfogainLoss, ContrastiveLoss.

Each returns its loss as a 0-D top (the net weighs it by its loss_weight). Normalisation
follows each layer's Caffe 1.0 rule; ContrastiveLoss has Caffe's own gradient (it adds 1e-4
to the distance it divides by), through a custom Function.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sparknet.caffe import schema
from sparknet.caffe.layers import CaffeLayer, Shape, canonical_axis
from sparknet.errors import CaffeFormatError

LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: probabilities below it count as it


def _normalizer(mode: str, *, outer: int, inner: int, valid: torch.Tensor | int) -> Any:
    """Caffe's LossLayer normaliser, at least 1."""
    if mode == "FULL":
        value: Any = outer * inner
    elif mode == "VALID":
        value = valid
    elif mode == "BATCH_SIZE":
        value = outer
    else:
        value = 1
    if isinstance(value, torch.Tensor):
        return torch.clamp(value.to(torch.float32), min=1.0)
    return float(max(1, value))


def _mode(param: Any, default: str) -> str:
    """loss_param.normalization, else the legacy ``normalize`` flag, else ``default``."""
    lp = param.loss_param
    if lp.HasField("normalization"):
        return schema.enum_name("NormalizationMode", lp.normalization)
    if lp.HasField("normalize"):
        return "VALID" if lp.normalize else "BATCH_SIZE"
    return default


class SigmoidCrossEntropyLoss(CaffeLayer):
    """Sum of the stable cross-entropy of sigmoid(x) against targets in [0, 1]; ignore_label
    skips an element; normalised BATCH_SIZE unless loss_param says otherwise."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        self.mode = _mode(param, "BATCH_SIZE")
        lp = param.loss_param
        self.ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
        if len(shapes) != 2 or _count(shapes[0]) != _count(shapes[1]):
            raise CaffeFormatError(f"{self.where()}: needs scores and targets of one count, "
                                   f"got {list(shapes)}")

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor]:
        t = target.detach().reshape(x.shape)
        valid = torch.ones_like(t, dtype=torch.bool) if self.ignore is None else \
            t.to(torch.int64) != self.ignore
        # max(x, 0) - x t + log(1 + exp(-|x|)), whose gradient is sigmoid(x) - t.
        terms = F.relu(x) - x * t + torch.log1p(torch.exp(-x.abs()))
        loss = torch.where(valid, terms, torch.zeros_like(terms)).sum()
        outer = x.shape[0]
        norm = _normalizer(self.mode, outer=outer, inner=x.numel() // max(outer, 1),
                           valid=valid.sum())
        return (loss / norm,)


class HingeLoss(CaffeLayer):
    """One-vs-all hinge loss: sum of max(0, 1 - s_y) and max(0, 1 + s_j) (L1) or their
    squares (L2), divided by the batch size."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        self.l2 = schema.enum_name("HingeNorm", param.hinge_loss_param.norm) == "L2"

    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor]:
        rows = scores.reshape(scores.shape[0], -1)
        index = label.detach().reshape(-1).to(torch.int64)
        sign = torch.ones_like(rows).scatter_(1, index[:, None], -1.0)
        margins = F.relu(1.0 + sign * rows)
        total = (margins * margins).sum() if self.l2 else margins.sum()
        return (total / rows.shape[0],)


class MultinomialLogisticLoss(CaffeLayer):
    """-mean over the batch of log(max(p_label, 1e-20)) for probabilities p."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)

    def forward(self, prob: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor]:
        rows = prob.reshape(prob.shape[0], -1)
        index = label.detach().reshape(-1).to(torch.int64)
        picked = rows.gather(1, index[:, None])
        floor = torch.full_like(picked, LOG_THRESHOLD)
        return (-torch.log(torch.where(picked > LOG_THRESHOLD, picked, floor)).sum()
                / rows.shape[0],)


class InfogainLoss(CaffeLayer):
    """-sum_l H[y, l] log(max(softmax(x)_l, 1e-20)), normalised as SoftmaxWithLoss; H is the
    third bottom or the binaryproto ``infogain_loss_param.source`` (relative to the working
    directory, as in Caffe). Its optional second top is the softmax."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.infogain_loss_param
        where = self.where()
        self.axis = canonical_axis(p.axis, len(shapes[0]), where)
        self.mode = _mode(param, "VALID")
        lp = param.loss_param
        self.ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
        classes = shapes[0][self.axis]
        self.matrix: torch.Tensor | None = None
        if len(shapes) < 3:
            if not p.source:
                raise CaffeFormatError(f"{where}: give the infogain matrix as a third bottom "
                                       "or infogain_loss_param.source")
            from sparknet.caffe.weights import read_binaryproto

            matrix = read_binaryproto(Path(p.source))
            if matrix.size != classes * classes:
                raise CaffeFormatError(f"{where}: {p.source} holds {matrix.size} values, not "
                                       f"{classes} x {classes}")
            self.register_buffer("matrix", torch.from_numpy(matrix.reshape(classes, classes)
                                                             .astype("float32")))
        self.with_prob = len(param.top) == 2

    def forward(self, x: torch.Tensor, label: torch.Tensor,
                matrix: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        classes = x.shape[self.axis]
        h = (matrix if matrix is not None else self.matrix)
        assert h is not None
        h = h.detach().reshape(classes, classes)
        prob = torch.softmax(x, dim=self.axis)
        moved = prob.movedim(self.axis, -1).reshape(-1, classes)
        labels = label.detach().reshape(-1).to(torch.int64)
        valid = torch.ones_like(labels, dtype=torch.bool) if self.ignore is None else \
            labels != self.ignore
        safe = torch.where(valid, labels, torch.zeros_like(labels))
        floor = torch.full_like(moved, LOG_THRESHOLD)
        logs = torch.log(torch.where(moved > LOG_THRESHOLD, moved, floor))
        per_row = -(h[safe] * logs).sum(-1)
        loss = torch.where(valid, per_row, torch.zeros_like(per_row)).sum()
        outer = int(torch.tensor(x.shape[:self.axis]).prod())
        norm = _normalizer(self.mode, outer=outer, inner=x.numel() // max(outer * classes, 1),
                           valid=valid.sum())
        out = loss / norm
        # Caffe's second top shares the softmax's data, never its gradient.
        return (out, prob.detach()) if self.with_prob else (out,)


class _ContrastiveFunction(torch.autograd.Function):
    """Caffe's contrastive loss and its gradient (the distance it divides by is + 1e-4)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, similar: torch.Tensor,
                margin: float, legacy: bool) -> torch.Tensor:
        diff = a - b
        dist_sq = (diff * diff).sum(-1)
        if legacy:
            dissimilar = torch.clamp(margin - dist_sq, min=0.0)
        else:
            dissimilar = torch.clamp(margin - torch.sqrt(dist_sq), min=0.0) ** 2
        loss = torch.where(similar, dist_sq, dissimilar).sum() / (2.0 * a.shape[0])
        ctx.save_for_backward(diff, dist_sq, similar)
        ctx.margin, ctx.legacy = margin, legacy
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        diff, dist_sq, similar = ctx.saved_tensors
        alpha = grad / diff.shape[0]
        if ctx.legacy:
            mdist = ctx.margin - dist_sq
            beta = -alpha * torch.ones_like(dist_sq)
        else:
            dist = torch.sqrt(dist_sq)
            mdist = ctx.margin - dist
            beta = -alpha * mdist / (dist + 1e-4)
        factor = torch.where(similar, alpha * torch.ones_like(dist_sq),
                             torch.where(mdist > 0, beta, torch.zeros_like(beta)))
        da = factor[:, None] * diff
        return da, -da, None, None, None


class ContrastiveLoss(CaffeLayer):
    """Hadsell et al.'s loss of pairs (a, b) with y = 1 for similar pairs: d^2 for similar,
    max(margin - d, 0)^2 otherwise (``legacy_version``: max(margin - d^2, 0)), / 2N."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.contrastive_loss_param
        self.margin, self.legacy = float(p.margin), bool(p.legacy_version)
        if len(shapes) != 3 or shapes[0] != shapes[1]:
            raise CaffeFormatError(f"{self.where()}: needs bottoms a, b of one shape and the "
                                   f"similarity label, got {list(shapes)}")

    def forward(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor
                ) -> tuple[torch.Tensor]:
        similar = y.detach().reshape(-1).to(torch.int64) != 0  # Caffe casts the label to int
        rows_a, rows_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        return (_ContrastiveFunction.apply(rows_a, rows_b, similar, self.margin, self.legacy),)


def _count(shape: Shape) -> int:
    total = 1
    for d in shape:
        total *= d
    return total
