"""Parameter-free Caffe layers: activations, blob plumbing, softmax, losses and accuracy.

Same contract as ``layers.py``: bottoms in, a tuple of tops out.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sparknet.caffe.layers import FLT_MIN, CaffeLayer, Shape, canonical_axis
from sparknet.errors import CaffeFormatError, DataError


class Identity(CaffeLayer):
    """Split (one copy per top) and Dropout in TEST; Silence has no tops."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        self.copies = len(param.top)
        self.ratio = param.dropout_param.dropout_ratio if param.type == "Dropout" else 0.0

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = bottoms[0]
        if self.ratio and self.training:  # Caffe's dropout scales kept units by 1/(1-p)
            x = F.dropout(x, self.ratio, training=True)
        return (x,) * self.copies


class _GivenGradient(torch.autograd.Function):
    """``value`` forward; ``grad * local_grad`` backward to ``x`` (or ``local_grad`` alone
    when ``replaces``): an elementwise layer whose Caffe gradient is not the derivative of
    its forward (see Elementwise)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor, local_grad: torch.Tensor,
                replaces: bool) -> torch.Tensor:
        ctx.save_for_backward(local_grad)
        ctx.replaces = replaces
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (local_grad,) = ctx.saved_tensors
        return (local_grad if ctx.replaces else grad * local_grad), None, None, None


class Elementwise(CaffeLayer):
    """ReLU (negative_slope), Sigmoid, TanH, Power, AbsVal, ELU, Exp, BNLL, Threshold, Log,
    Swish, Clip.

    In place, Caffe's ReLU, Power, BNLL, Log and Clip compute their gradient from the blob they have
    just overwritten (their output) instead of their input, and Power and Log also overwrite
    the incoming gradient before they read it (their input gradient is then the square of
    their local derivative); those gradients are reproduced, and in-place Power and Log warn.
    """

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        self.kind = param.type
        if self.kind in ("Power", "Log") and self.in_place:
            warnings.warn(f"{self.where()} runs in place: its gradient then ignores the "
                          "gradient from above, as in Caffe; give it a top of its own before "
                          "training it", stacklevel=2)
        self.p = {
            "ReLU": lambda: (param.relu_param.negative_slope,),
            "Power": lambda: (param.power_param.power, param.power_param.scale,
                              param.power_param.shift),
            "ELU": lambda: (param.elu_param.alpha,),
            "Exp": lambda: (param.exp_param.base, param.exp_param.scale, param.exp_param.shift),
            "Threshold": lambda: (param.threshold_param.threshold,),
            "Log": lambda: (param.log_param.base, param.log_param.scale,
                            param.log_param.shift),
            "Swish": lambda: (param.swish_param.beta,),
            "Clip": lambda: _clip_bounds(param, self.where()),
        }.get(self.kind, tuple)()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        y = self._value(x)
        exporting = torch.jit.is_tracing() or torch.compiler.is_compiling()  # type: ignore[attr-defined]
        if (self.in_place and x.requires_grad and torch.is_grad_enabled() and not exporting
                and self.kind in ("ReLU", "Power", "BNLL", "Log", "Clip")):  # exports: plain
            with torch.no_grad():
                local_grad = self._caffe_local_grad(bottom=y, top=y)
            if self.kind in ("Power", "Log"):  # bottom diff overwrote the top diff: L * L
                return (_GivenGradient.apply(x, y.detach(), local_grad * local_grad, True),)
            return (_GivenGradient.apply(x, y.detach(), local_grad, False),)
        return (y,)

    def _caffe_local_grad(self, *, bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """d top / d bottom as Caffe's Backward_cpu computes it from the two blobs."""
        p = self.p
        if self.kind == "ReLU":
            return (bottom > 0).to(bottom.dtype) + p[0] * (bottom <= 0).to(bottom.dtype)
        if self.kind == "BNLL":
            e = torch.exp(torch.clamp(bottom, max=50.0))
            return e / (e + 1.0)
        if self.kind == "Clip":  # Caffe's mask min <= bottom <= max (in place: always 1)
            return ((bottom >= p[0]) & (bottom <= p[1])).to(bottom.dtype)
        if self.kind == "Log":  # scale / ln(base) / (shift + scale * bottom)
            return _log_factor(p) * p[1] / (p[2] + p[1] * bottom)
        power, scale, shift = p
        diff_scale = power * scale
        if diff_scale == 0 or power == 1:
            return torch.full_like(bottom, diff_scale)
        if power == 2:
            return diff_scale * scale * bottom + diff_scale * shift
        if shift == 0:
            return power * top / bottom
        return diff_scale * top / (shift + scale * bottom)

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        kind, p = self.kind, self.p
        if kind == "ReLU":
            # where(), not clamps: at x == 0 Caffe's gradient is the slope (clamps add 1).
            y = torch.where(x > 0, x, p[0] * x) if p[0] else F.relu(x)
        elif kind == "Sigmoid":
            y = torch.sigmoid(x)
        elif kind == "TanH":
            y = torch.tanh(x)
        elif kind == "Power":
            y = torch.pow(p[2] + p[1] * x, p[0]) if p[0] != 1 else p[2] + p[1] * x
        elif kind == "AbsVal":
            y = torch.abs(x)
        elif kind == "ELU":
            y = F.elu(x, p[0])
        elif kind == "Exp":
            log_base = 1.0 if p[0] == -1 else math.log(p[0])
            y = torch.exp((p[2] + p[1] * x) * log_base)
        elif kind == "BNLL":
            y = F.softplus(x)
        elif kind == "Log":
            y = torch.log(p[2] + p[1] * x) * _log_factor(p)
        elif kind == "Swish":
            y = x * torch.sigmoid(p[0] * x)
        elif kind == "Clip":
            y = torch.clamp(x, p[0], p[1])
        else:
            y = (x > p[0]).to(x.dtype)
        return y


def _log_factor(p: tuple[float, ...]) -> float:
    """1 / ln(base) of Caffe's Log layer (base -1: the natural logarithm)."""
    return 1.0 if p[0] == -1 else 1.0 / math.log(p[0])


def _clip_bounds(param: Any, where: str) -> tuple[float, float]:
    p = param.clip_param
    if not (p.HasField("min") and p.HasField("max")):
        raise CaffeFormatError(f"{where}: clip_param needs min and max (Caffe requires both)")
    if p.min > p.max:
        raise CaffeFormatError(f"{where}: clip_param min {p.min} is above max {p.max}")
    return (p.min, p.max)


class Eltwise(CaffeLayer):
    """SUM (with coefficients), PROD, MAX over the bottoms."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.eltwise_param
        self.op = int(p.operation)
        self.coeff = list(p.coeff) or [1.0] * len(shapes)
        if len(self.coeff) != len(shapes):
            raise CaffeFormatError(
                f"{self.where()}: {len(self.coeff)} coeff for {len(shapes)} bottoms; give one "
                "coeff per bottom"
            )
        if self.op != 1 and p.coeff:
            raise CaffeFormatError(f"{self.where()}: coeff is only valid for SUM")
        if any(s != shapes[0] for s in shapes):
            raise CaffeFormatError(f"{self.where()}: bottoms differ in shape: {list(shapes)}")

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor]:
        if self.op == 2:
            return (self._max(bottoms),)
        y = bottoms[0] if self.op != 1 else bottoms[0] * self.coeff[0]
        for c, b in zip(self.coeff[1:], bottoms[1:], strict=True):
            y = y * b if self.op == 0 else y + c * b
        return (y,)

    @staticmethod
    def _max(bottoms: Sequence[torch.Tensor]) -> torch.Tensor:
        # Caffe's argmax, which alone receives the gradient: between the first two bottoms
        # a tie goes to the second, after that to the earlier one (a strict > comparison).
        with torch.no_grad():
            second = ~(bottoms[0] > bottoms[1])
            winner = second.to(torch.int64)
            best = torch.where(second, bottoms[1], bottoms[0])
            for k, b in enumerate(bottoms[2:], start=2):
                better = b > best
                winner = torch.where(better, k, winner)
                best = torch.where(better, b, best)
        return torch.gather(torch.stack(list(bottoms)), 0, winner.unsqueeze(0)).squeeze(0)


class Concat(CaffeLayer):
    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.concat_param
        axis = p.concat_dim if p.HasField("concat_dim") and not p.HasField("axis") else p.axis
        self.axis = canonical_axis(axis, len(shapes[0]), self.where())

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.cat(bottoms, dim=self.axis),)


class Flatten(CaffeLayer):
    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        ndim = len(shapes[0])
        self.start = canonical_axis(param.flatten_param.axis, ndim, self.where())
        self.end = canonical_axis(param.flatten_param.end_axis, ndim, self.where())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.flatten(x, self.start, self.end),)


class Reshape(CaffeLayer):
    """Caffe Reshape: 0 copies the bottom's dimension, -1 is inferred; axis/num_axes."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        ndim = len(shapes[0])
        self.start = p.axis + ndim + 1 if p.axis < 0 else p.axis
        self.num_axes = p.num_axes
        if not 0 <= self.start <= ndim or sum(d == -1 for d in self.dims) > 1:
            raise CaffeFormatError(f"{self.where()}: bad reshape axis or more than one -1")
        self.forward(torch.zeros(shapes[0]))  # validates the shape arithmetic once

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        shape = list(x.shape)
        end = len(shape) if self.num_axes == -1 else self.start + self.num_axes
        middle = [shape[self.start + i] if d == 0 else d for i, d in enumerate(self.dims)]
        new = shape[: self.start] + middle + shape[end:]
        if -1 in new:
            known = math.prod(d for d in new if d != -1)
            new[new.index(-1)] = x.numel() // known if known else 0
        if math.prod(new) != x.numel():
            raise CaffeFormatError(f"{self.where()}: cannot reshape {tuple(shape)} to {new}")
        return (x.reshape(new),)


class Slice(CaffeLayer):
    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.slice_param
        axis = p.slice_dim if p.HasField("slice_dim") and not p.HasField("axis") else p.axis
        self.axis = canonical_axis(axis, len(shapes[0]), self.where())
        total, tops = shapes[0][self.axis], len(param.top)
        points = [int(v) for v in p.slice_point]
        if points:
            if len(points) != tops - 1 or points != sorted(points) or points[-1] >= total:
                raise CaffeFormatError(
                    f"{self.where()}: slice_point {points} does not split {total} into {tops}"
                )
            bounds = [0, *points, total]
        else:
            if total % tops:
                raise CaffeFormatError(f"{self.where()}: {total} does not split into {tops} tops")
            bounds = [i * total // tops for i in range(tops + 1)]
        self.sizes = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, self.sizes, dim=self.axis))


class Softmax(CaffeLayer):
    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        self.axis = canonical_axis(param.softmax_param.axis, len(shapes[0]), self.where())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.softmax(x, dim=self.axis),)


def _labels(scores_shape: Sequence[int], label: torch.Tensor, axis: int, where: str
            ) -> torch.Tensor:
    outer, inner = math.prod(scores_shape[:axis]), math.prod(scores_shape[axis + 1:])
    if label.numel() != outer * inner:
        raise DataError(
            f"{where}: label has {label.numel()} values but the scores need {outer * inner} "
            f"(scores shape {tuple(scores_shape)}, axis {axis})"
        )
    return label.reshape(outer, inner).to(torch.int64)  # Caffe casts float labels to int


class SoftmaxWithLoss(CaffeLayer):
    """Mean cross-entropy of softmax over ``axis``, with ignore_label and normalization."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        lp = param.loss_param
        self.axis = canonical_axis(param.softmax_param.axis, len(shapes[0]), self.where())
        self.ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
        mode = int(lp.normalization)
        if not lp.HasField("normalization") and lp.HasField("normalize"):
            mode = 1 if lp.normalize else 2  # legacy bool: VALID or BATCH_SIZE
        self.mode = mode

    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor]:
        axis, classes = self.axis, int(scores.shape[self.axis])
        labels = _labels(scores.shape, label, axis, self.where())
        outer, inner = labels.shape
        logp = torch.log_softmax(scores, dim=axis).reshape(outer, classes, inner)
        valid = labels != self.ignore if self.ignore is not None else torch.ones_like(
            labels, dtype=torch.bool)
        safe = torch.where(valid, labels, torch.zeros_like(labels))
        if bool(((safe < 0) | (safe >= classes)).any()):
            raise DataError(f"{self.where()}: a label is outside [0, {classes})")
        # Caffe's loss takes log(max(prob, FLT_MIN)), i.e. the log-probability floored at
        # log(FLT_MIN), but its gradient stays prob - 1 below the floor: floor the value only.
        picked = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        floor = torch.clamp(picked.detach(), min=math.log(FLT_MIN)) - picked.detach()
        picked = picked + floor
        total = -(picked * valid.to(picked.dtype)).sum()
        if self.mode == 1 and self.ignore is not None:  # VALID: the non-ignored count
            return (total / torch.clamp(valid.sum().to(total.dtype), min=1.0),)
        norm = {0: outer * inner, 1: outer * inner, 2: outer}.get(self.mode, 1)
        return (total / max(1.0, float(norm)),)


class EuclideanLoss(CaffeLayer):
    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor]:
        return (((a - b) ** 2).sum() / a.shape[0] / 2.0,)


class Accuracy(CaffeLayer):
    """Top-k accuracy; a tie with the true class counts against it, as in Caffe."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: Any) -> None:
        super().__init__(param)
        p = param.accuracy_param
        self.top_k = int(p.top_k)
        self.axis = canonical_axis(p.axis, len(shapes[0]), self.where())
        self.ignore = int(p.ignore_label) if p.HasField("ignore_label") else None
        self.per_class = len(param.top) == 2  # Caffe's optional top: accuracy of each class

    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, ...]:
        axis, classes = self.axis, int(scores.shape[self.axis])
        labels = _labels(scores.shape, label, axis, self.where())
        outer, inner = labels.shape
        s = scores.detach().reshape(outer, classes, inner)
        valid = labels != self.ignore if self.ignore is not None else torch.ones_like(
            labels, dtype=torch.bool)
        safe = torch.where(valid, labels, torch.zeros_like(labels)).clamp(0, classes - 1)
        true_score = s.gather(1, safe.unsqueeze(1))
        better = (s >= true_score).sum(dim=1) - 1  # the true class itself is not "better"
        hits = (better < self.top_k) & valid
        correct = hits.sum().to(scores.dtype)
        accuracy = correct / torch.clamp(valid.sum().to(scores.dtype), min=1.0)
        if not self.per_class:
            return (accuracy,)
        # Per class: hits / examples of that class (0 for a class with none), as Caffe.
        counts = torch.zeros(classes, dtype=scores.dtype).index_add_(
            0, safe[valid], torch.ones_like(safe[valid], dtype=scores.dtype))
        class_hits = torch.zeros(classes, dtype=scores.dtype).index_add_(
            0, safe[hits], torch.ones_like(safe[hits], dtype=scores.dtype))
        per_class = torch.where(counts > 0, class_hits / counts.clamp(min=1.0),
                                torch.zeros_like(counts))
        return accuracy, per_class
