"""Caffe 1.0 layers that reshape, select, reduce or look up blobs: Bias, Crop, Tile,
Reduction, ArgMax, MVN, Embed, Im2col, Parameter, BatchReindex, Filter, SPP.

Same contract as ``layers.py``: built from the LayerParameter and the bottoms' shapes,
bottoms in, a tuple of tops out, Caffe blobs in ``self.blobs``. Gradients are torch's
autograd of the forward, except where Caffe's backward is not the derivative of its forward
(MVN: a custom Function with Caffe's formula).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sparknet.caffe import schema
from sparknet.caffe.fillers import fill
from sparknet.caffe.layers import (
    CaffeLayer,
    Pooling,
    Shape,
    add_operand,
    canonical_axis,
    conv_geometry,
)
from sparknet.errors import CaffeFormatError


class Bias(CaffeLayer):
    """y = x + b, b a blob (axis, num_axes) or the second bottom, broadcast from ``axis``."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        _, self.view = add_operand(self, param.bias_param, shapes, gen, what="bias", value=0.0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        b = bias if bias is not None else self.blobs[0]
        return (x + b.reshape(self.view),)


class Crop(CaffeLayer):
    """bottom[0] cut to bottom[1]'s shape on the axes from ``axis`` on, at ``offset``."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.crop_param
        where = self.where()
        if len(shapes) != 2 or len(shapes[0]) != len(shapes[1]):
            raise CaffeFormatError(f"{where}: needs two bottoms of as many axes, got {shapes}")
        start = canonical_axis(p.axis, len(shapes[0]), where)
        offsets = list(p.offset)
        if len(offsets) > 1 and len(offsets) != len(shapes[0]) - start:
            raise CaffeFormatError(f"{where}: give one offset or one per cropped axis "
                                   f"({len(shapes[0]) - start}), not {len(offsets)}")
        self.slices = []
        for axis, size in enumerate(shapes[0]):
            if axis < start:
                self.slices.append(slice(None))
                continue
            offset = offsets[0] if len(offsets) == 1 else (
                offsets[axis - start] if offsets else 0)
            new = shapes[1][axis]
            if offset + new > size:
                raise CaffeFormatError(f"{where}: offset {offset} + size {new} on axis {axis} "
                                       f"passes the bottom's {size}")
            self.slices.append(slice(offset, offset + new))

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor]:
        return (x[tuple(self.slices)],)


class Tile(CaffeLayer):
    """``tiles`` copies of the blob along ``axis`` (the whole of axes from there on)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.tile_param
        self.axis = canonical_axis(p.axis, len(shapes[0]), self.where())
        if not p.HasField("tiles") or p.tiles < 1:
            raise CaffeFormatError(f"{self.where()}: tile_param.tiles must be at least 1")
        self.tiles = int(p.tiles)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        repeats = [1] * x.dim()
        repeats[self.axis] = self.tiles
        return (x.repeat(*repeats),)


class Reduction(CaffeLayer):
    """SUM, ASUM, SUMSQ or MEAN over the axes from ``axis`` on, times ``coeff``."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.reduction_param
        self.axis = canonical_axis(p.axis, len(shapes[0]), self.where())
        self.operation = schema.enum_name("ReductionOp", p.operation)
        self.coeff = p.coeff

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        rows = x.reshape(*x.shape[:self.axis], -1)
        if self.operation == "ASUM":
            # Caffe's gradient of |x| is sign(x): 0 at 0, as torch's abs.
            y = rows.abs().sum(-1)
        elif self.operation == "SUMSQ":
            y = (rows * rows).sum(-1)
        else:
            y = rows.sum(-1)
            if self.operation == "MEAN":
                y = y * (1.0 / max(rows.shape[-1], 1))
        return (y * self.coeff if self.coeff != 1 else y,)


class ArgMax(CaffeLayer):
    """The indices (and with ``out_max_val`` the values) of the top_k largest values, per
    example or along ``axis``; ties go to the larger index (Caffe sorts (value, index) pairs
    in descending order)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.argmax_param
        self.top_k = int(p.top_k)
        self.out_max_val = bool(p.out_max_val)
        self.axis = canonical_axis(p.axis, len(shapes[0]), self.where()) if p.HasField(
            "axis") else None
        size = shapes[0][self.axis] if self.axis is not None else math.prod(shapes[0][1:])
        if not 1 <= self.top_k <= size:
            raise CaffeFormatError(f"{self.where()}: top_k {self.top_k} must be in [1, {size}]")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        data = x.detach()
        axis = self.axis if self.axis is not None else 1
        if self.axis is None:
            data = data.reshape(data.shape[0], -1)
        moved = data.movedim(axis, -1)
        # Descending by value, then by index: sort the reversed order stably.
        flipped = moved.flip(-1)
        order = torch.sort(flipped, dim=-1, descending=True, stable=True).indices
        index = (moved.shape[-1] - 1 - order)[..., :self.top_k]
        value = moved.gather(-1, index)
        if self.axis is not None:
            out = value if self.out_max_val else index.to(x.dtype)
            return (out.movedim(-1, axis),)
        n = data.shape[0]
        if self.out_max_val:
            return (torch.stack([index.to(x.dtype), value], dim=1).reshape(n, 2, self.top_k)
                    .reshape(n, 2, self.top_k, *([1] * max(0, x.dim() - 3))),)
        shape = (n, 1, self.top_k, *([1] * max(0, x.dim() - 3)))
        return (index.to(x.dtype).reshape(shape),)


class _MVNFunction(torch.autograd.Function):
    """Caffe's MVN with normalize_variance: y = (x - mean) / (std + eps) with the gradient
    Caffe computes, dx = (dy - mean(dy) - y * mean(y * dy)) / (std + eps), which stays finite
    for constant rows (std 0), where the true derivative does not exist."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, eps: float) -> torch.Tensor:
        centred = rows - rows.mean(-1, keepdim=True)
        scale = torch.sqrt((centred * centred).mean(-1, keepdim=True)) + eps
        y = centred / scale
        ctx.save_for_backward(y, scale)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        y, scale = ctx.saved_tensors
        dx = grad - grad.mean(-1, keepdim=True) - y * (y * grad).mean(-1, keepdim=True)
        return dx / scale, None


class MVN(CaffeLayer):
    """Mean (and variance) normalisation per example and channel, or per example."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.mvn_param
        if len(shapes[0]) < 2:
            raise CaffeFormatError(f"{self.where()}: needs a bottom of at least 2 axes")
        self.start = 1 if p.across_channels else 2
        self.variance = bool(p.normalize_variance)
        self.eps = float(p.eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        rows = x.reshape(*x.shape[:self.start], -1)
        if self.variance:
            y = _MVNFunction.apply(rows, self.eps)
        else:
            y = rows - rows.mean(-1, keepdim=True)
        return (y.reshape(x.shape),)


class Embed(CaffeLayer):
    """Rows of a (input_dim, num_output) table picked by integer inputs, plus a bias."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.embed_param
        where = self.where()
        if not p.num_output or not p.input_dim:
            raise CaffeFormatError(f"{where}: embed_param needs num_output and input_dim")
        self.input_dim = int(p.input_dim)
        wf = p.weight_filler if p.HasField("weight_filler") else None
        self.add_blob(fill((self.input_dim, int(p.num_output)), wf, default="constant",
                           generator=gen, where=where))
        self.bias_term = bool(p.bias_term)
        if self.bias_term:
            bf = p.bias_filler if p.HasField("bias_filler") else None
            self.add_blob(fill((int(p.num_output),), bf, default="constant", generator=gen,
                               where=where))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        index = x.detach().to(torch.int64)  # Caffe truncates the float inputs
        if index.numel() and (index.min() < 0 or index.max() >= self.input_dim):
            raise CaffeFormatError(f"{self.where()}: inputs must be in [0, {self.input_dim})")
        y = self.blobs[0][index]
        return (y + self.blobs[1] if self.bias_term else y,)


class Im2col(CaffeLayer):
    """Caffe's im2col: (N, C*kh*kw, H_out, W_out), channel-major like its convolution."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        where = self.where()
        if len(shapes[0]) != 4:
            raise CaffeFormatError(f"{where}: needs a 4-D bottom, got {shapes[0]}")
        self.kernel, self.pad, self.stride, self.dilation = conv_geometry(
            param.convolution_param, where)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        cols = F.unfold(x, self.kernel, self.dilation, self.pad, self.stride)
        out_h, out_w = (
            (size + 2 * pad - (dil * (k - 1) + 1)) // st + 1 for size, pad, dil, k, st in
            zip(x.shape[2:], self.pad, self.dilation, self.kernel, self.stride, strict=True))
        return (cols.reshape(x.shape[0], cols.shape[1], out_h, out_w),)


class Parameter(CaffeLayer):
    """No bottoms; its one blob (``parameter_param.shape``) is its top."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        shape = tuple(int(d) for d in param.parameter_param.shape.dim)
        self.add_blob(torch.zeros(shape))  # Caffe leaves it 0 until weights are loaded

    def forward(self) -> tuple[torch.Tensor]:
        return (self.blobs[0] * 1.0,)  # a new tensor: the top is not the parameter itself


class BatchReindex(CaffeLayer):
    """top[i] = bottom[permutation[i]] along the first axis (gradients add up)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)

    def forward(self, x: torch.Tensor, permutation: torch.Tensor) -> tuple[torch.Tensor]:
        index = permutation.detach().to(torch.int64).reshape(-1)
        if index.numel() and (index.min() < 0 or index.max() >= x.shape[0]):
            raise CaffeFormatError(f"{self.where()}: indices must be in [0, {x.shape[0]})")
        return (x.index_select(0, index),)


class Filter(CaffeLayer):
    """The rows of every bottom but the last whose selector (the last bottom) is not 0."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        if len(shapes) < 2 or len(param.top) != len(shapes) - 1:
            raise CaffeFormatError(f"{self.where()}: needs data bottoms and a selector, and one "
                                   "top per data bottom")

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        selector = bottoms[-1].detach().reshape(bottoms[-1].shape[0], -1)[:, 0]
        index = torch.nonzero(selector != 0).reshape(-1)
        return tuple(x.index_select(0, index) for x in bottoms[:-1])


class SPP(CaffeLayer):
    """Spatial pyramid pooling: level l pools into 2^l x 2^l bins (kernel ceil(H / bins),
    padding to cover the image, stride = kernel); the levels flattened and concatenated."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.spp_param
        where = self.where()
        if len(shapes[0]) != 4:
            raise CaffeFormatError(f"{where}: needs a 4-D bottom, got {shapes[0]}")
        if not p.pyramid_height:
            raise CaffeFormatError(f"{where}: spp_param.pyramid_height must be at least 1")
        height, width = shapes[0][2], shapes[0][3]
        self.levels = torch.nn.ModuleList()
        for level in range(int(p.pyramid_height)):
            bins = 2 ** level
            pooling = schema.LayerParameter(name=f"{param.name}_level{level}", type="Pooling")
            pooling.top.append("pooled")
            q = pooling.pooling_param
            q.pool = p.pool
            q.kernel_h, q.kernel_w = -(-height // bins), -(-width // bins)
            q.pad_h = (q.kernel_h * bins - height + 1) // 2
            q.pad_w = (q.kernel_w * bins - width + 1) // 2
            q.stride_h, q.stride_w = q.kernel_h, q.kernel_w
            if q.pool == 2:
                raise CaffeFormatError(f"{where}: field pool: STOCHASTIC of SPP is not "
                                       "supported; use MAX or AVE")
            self.levels.append(Pooling(pooling, shapes[:1], gen))
        self.single = len(self.levels) == 1  # one level: Caffe's plain pooled blob

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        pooled = [level(x)[0] for level in self.levels]
        if self.single:
            return (pooled[0],)
        return (torch.cat([p.flatten(1) for p in pooled], dim=1),)
