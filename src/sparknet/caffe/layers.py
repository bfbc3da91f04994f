"""Caffe layers with parameters or spatial semantics, as torch modules.

Every layer module takes its bottoms as positional tensors and returns a tuple of tops. Its
Caffe blobs live in ``self.blobs`` in Caffe's order, so weight files map onto it one to one.
Each module is built from its LayerParameter and the shapes of its bottoms.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparknet.caffe.fillers import fill
from sparknet.errors import CaffeFormatError

Shape = tuple[int, ...]
FLT_MIN = 1.17549435e-38


class BlobList(nn.ParameterList):
    """A layer's blobs in Caffe's order. A blob shared by name with ``share_mode:
    PERMISSIVE`` holds the owning layer's parameter and is read in this layer's own shape
    (``shapes``), as Caffe's ShareData gives a blob another's values of the same count."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[int, tuple[int, ...]] = {}

    def __getitem__(self, idx: Any) -> Any:
        item = super().__getitem__(idx)
        if isinstance(idx, int) and self.shapes:
            shape = self.shapes.get(idx if idx >= 0 else idx + len(self))
            if shape is not None:
                return item.view(shape)
        return item

    def parameter(self, index: int) -> nn.Parameter:
        """Blob ``index``'s parameter itself (the owner's, in its shape, when shared)."""
        param: nn.Parameter = super().__getitem__(index)
        return param


class CaffeLayer(nn.Module):
    """Base class: one Caffe layer; ``blobs`` holds its parameters in Caffe's order."""

    def __init__(self, param: Any) -> None:
        super().__init__()
        self.caffe_name: str = param.name
        self.caffe_type: str = param.type
        # In place (top == bottom after Split insertion): Caffe's backward then reads the
        # overwritten blob where it would read the bottom, which some layers reproduce.
        self.in_place = len(param.top) > 0 and list(param.top) == list(param.bottom)
        self.blobs = BlobList()

    def where(self) -> str:
        return f"layer {self.caffe_name!r} ({self.caffe_type})"

    def add_blob(self, tensor: torch.Tensor, *, trainable: bool = True) -> None:
        self.blobs.append(nn.Parameter(tensor, requires_grad=trainable))

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        """Around the forward pass that finds the tops' shapes while the net is built (Caffe
        runs none then): a layer whose forward pass leaves something behind (a carried
        state, a file) undoes or skips it here."""
        yield


def _pair(param: Any, name: str, default: int, where: str) -> tuple[int, int]:
    """Caffe's (h, w) from ``name_h``/``name_w`` or the repeated/optional ``name`` field."""
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        if not (param.HasField(f"{name}_h") and param.HasField(f"{name}_w")):
            raise CaffeFormatError(f"{where}: set both {name}_h and {name}_w, or neither")
        return int(getattr(param, f"{name}_h")), int(getattr(param, f"{name}_w"))
    field = param.DESCRIPTOR.fields_by_name[name if name != "kernel" else "kernel_size"]
    values = getattr(param, field.name)
    if not isinstance(values, int):  # a repeated field (ConvolutionParameter)
        values = list(values)
        if not values:
            return default, default
        if len(values) == 1:
            return int(values[0]), int(values[0])
        if len(values) == 2:
            return int(values[0]), int(values[1])
        raise CaffeFormatError(f"{where}: {field.name} has {len(values)} values; 2-D only")
    if not param.HasField(field.name):
        return default, default
    return int(values), int(values)


def _check_4d(shape: Shape, where: str) -> None:
    if len(shape) != 4:
        raise CaffeFormatError(f"{where}: needs a 4-D (N, C, H, W) bottom, got shape {shape}")


def conv_geometry(p: Any, where: str) -> tuple[tuple[int, int], ...]:
    """(kernel, pad, stride, dilation) as (h, w) pairs of a 2-D ConvolutionParameter."""
    kernel = _pair(p, "kernel", 0, where)
    if min(kernel) <= 0:
        raise CaffeFormatError(f"{where}: give kernel_size or kernel_h/kernel_w (> 0)")
    dilation = list(p.dilation) or [1]
    return (kernel, _pair(p, "pad", 0, where), _pair(p, "stride", 1, where),
            (int(dilation[0]), int(dilation[-1])))


class Convolution(CaffeLayer):
    """Convolution and Deconvolution (group, dilation, rectangular kernel/pad/stride)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.convolution_param
        where = self.where()
        _check_4d(shapes[0], where)
        if p.axis != 1:
            raise CaffeFormatError(f"{where}: convolution axis {p.axis} is not supported; use 1")
        if not p.HasField("num_output"):
            raise CaffeFormatError(f"{where}: convolution_param.num_output is required")
        self.kernel, self.pad, self.stride, self.dilation = conv_geometry(p, where)
        self.group = int(p.group)
        self.transposed = param.type == "Deconvolution"
        channels, n_out = shapes[0][1], int(p.num_output)
        if channels % self.group or n_out % self.group:
            raise CaffeFormatError(
                f"{where}: group {self.group} must divide input channels {channels} and "
                f"num_output {n_out}"
            )
        if self.transposed:
            weight_shape = (channels, n_out // self.group, *self.kernel)
        else:
            weight_shape = (n_out, channels // self.group, *self.kernel)
        # Several bottoms: each is convolved with the same weights into its own top.
        if any(shape != shapes[0] for shape in shapes[1:]):
            raise CaffeFormatError(f"{where}: all bottoms must have one shape (Caffe), got "
                                   f"{list(shapes)}")
        if len(param.top) != len(shapes):
            raise CaffeFormatError(f"{where}: {len(shapes)} bottoms need as many tops, got "
                                   f"{len(param.top)}")
        wf = p.weight_filler if p.HasField("weight_filler") else None
        self.add_blob(fill(weight_shape, wf, default="constant", generator=gen, where=where))
        self.bias_term = bool(p.bias_term)
        if self.bias_term:
            bf = p.bias_filler if p.HasField("bias_filler") else None
            self.add_blob(fill((n_out,), bf, default="constant", generator=gen, where=where))

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bias = self.blobs[1] if self.bias_term else None
        if self.transposed:
            return tuple(F.conv_transpose2d(x, self.blobs[0], bias, self.stride, self.pad, 0,
                                            self.group, self.dilation) for x in bottoms)
        return tuple(F.conv2d(x, self.blobs[0], bias, self.stride, self.pad, self.dilation,
                              self.group) for x in bottoms)


def pooled_size(size: int, kernel: int, pad: int, stride: int, *, ceil: bool,
                padded: bool) -> int:
    """Caffe's pooled output size, incl. the rule that the last window starts in the image.

    Caffe applies that rule on both axes as soon as either is padded (``padded``).
    """
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if padded and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start in the padding only
    return out


def ave_pool_divisor(size: int, kernel: int, pad: int, stride: int, out: int) -> list[int]:
    """Caffe's AVE divisor per output position: the window clipped to the padded bounds."""
    return [min(o * stride - pad + kernel, size + pad) - (o * stride - pad) for o in range(out)]


class Pooling(CaffeLayer):
    """MAX and AVE pooling with Caffe's output size and AVE divisor; global pooling."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.pooling_param
        where = self.where()
        _check_4d(shapes[0], where)
        self.method = int(p.pool)
        if self.method not in (0, 1):
            raise CaffeFormatError(f"{where}: only MAX and AVE pooling are supported")
        self.global_pooling = bool(p.global_pooling)
        if self.global_pooling:
            self.kernel = (shapes[0][2], shapes[0][3])
        else:
            self.kernel = _pair(p, "kernel", 0, where)
            if min(self.kernel) <= 0:
                raise CaffeFormatError(f"{where}: give kernel_size or kernel_h/kernel_w (> 0)")
        self.pad = _pair(p, "pad", 0, where)
        self.stride = _pair(p, "stride", 1, where)
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise CaffeFormatError(f"{where}: global pooling needs pad 0 and stride 1")
        if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
            raise CaffeFormatError(f"{where}: pad {self.pad} must be smaller than the kernel")
        self.ceil = int(p.round_mode) == 0
        # MAX pooling's optional second top: Caffe's mask, the flat index h * W + w of each
        # maximum in its (unpadded) input channel, as a float.
        self.mask = len(param.top) == 2
        if self.mask and self.method != 0:
            raise CaffeFormatError(f"{where}: only MAX pooling has a second (mask) top")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        height, width = int(x.shape[2]), int(x.shape[3])
        kernel = (height, width) if self.global_pooling else self.kernel
        padded = self.pad != (0, 0)
        outs = [pooled_size(s, k, p, st, ceil=self.ceil, padded=padded) for s, k, p, st in
                zip((height, width), kernel, self.pad, self.stride, strict=True)]
        if not padded and any((o - 1) * st >= s for o, st, s in
                              zip(outs, self.stride, (height, width), strict=True)):
            raise CaffeFormatError(
                f"{self.where()}: with kernel {kernel} and stride {self.stride}, Caffe's ceil "
                f"rounding puts the last window outside the {height}x{width} input (Caffe then "
                "reads and writes out of bounds); set round_mode: FLOOR, a pad, or a kernel "
                "of at least the stride")
        # Pad (or crop) so that exactly the windows Caffe visits fit without framework padding.
        extra = [(o - 1) * st + k - s - p for o, st, k, s, p in
                 zip(outs, self.stride, kernel, (height, width), self.pad, strict=True)]
        x = x[:, :, : height + min(extra[0], 0), : width + min(extra[1], 0)]
        pads = (self.pad[1], max(extra[1], 0), self.pad[0], max(extra[0], 0))
        if self.method == 0:
            if not self.mask:
                return (F.max_pool2d(F.pad(x, pads, value=-math.inf), kernel, self.stride),)
            padded_input = F.pad(x, pads, value=-math.inf)
            y, index = F.max_pool2d(padded_input, kernel, self.stride, return_indices=True)
            # torch's first maximum in row-major order is Caffe's (it keeps the first one);
            # its index counts in the padded input, Caffe's in the unpadded one.
            row, col = index // padded_input.shape[3], index % padded_input.shape[3]
            mask = (row - self.pad[0]) * width + (col - self.pad[1])
            return y, mask.to(x.dtype)
        total = F.avg_pool2d(F.pad(x, pads), kernel, self.stride) * (kernel[0] * kernel[1])
        rows = ave_pool_divisor(height, kernel[0], self.pad[0], self.stride[0], outs[0])
        cols = ave_pool_divisor(width, kernel[1], self.pad[1], self.stride[1], outs[1])
        divisor = torch.tensor(rows, dtype=x.dtype)[:, None] * torch.tensor(cols, dtype=x.dtype)
        return (total / divisor.to(x.device),)


class InnerProduct(CaffeLayer):
    """y = x_flat W^T + b over the axes from ``axis`` on (``transpose`` stores W as (K, N))."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.inner_product_param
        where = self.where()
        self.axis = canonical_axis(p.axis, len(shapes[0]), where)
        k = math.prod(shapes[0][self.axis:])
        n = int(p.num_output)
        self.transpose = bool(p.transpose)
        wshape = (k, n) if self.transpose else (n, k)
        wf = p.weight_filler if p.HasField("weight_filler") else None
        self.add_blob(fill(wshape, wf, default="constant", generator=gen, where=where))
        self.bias_term = bool(p.bias_term)
        if self.bias_term:
            bf = p.bias_filler if p.HasField("bias_filler") else None
            self.add_blob(fill((n,), bf, default="constant", generator=gen, where=where))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        flat = x.flatten(self.axis)
        weight = self.blobs[0].t() if self.transpose else self.blobs[0]
        return (F.linear(flat, weight, self.blobs[1] if self.bias_term else None),)


def canonical_axis(axis: int, ndim: int, where: str) -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end."""
    if not -ndim <= axis < max(ndim, 1):
        raise CaffeFormatError(f"{where}: axis {axis} is out of range for a {ndim}-D blob")
    return axis + ndim if axis < 0 else axis


class LRN(CaffeLayer):
    """Local response normalisation, ACROSS_CHANNELS and WITHIN_CHANNEL."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.lrn_param
        _check_4d(shapes[0], self.where())
        self.size, self.alpha, self.beta, self.k = int(p.local_size), p.alpha, p.beta, p.k
        if self.size % 2 == 0:
            raise CaffeFormatError(f"{self.where()}: local_size {self.size} must be odd")
        self.across = int(p.norm_region) == 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if self.across:  # k + alpha/n * sum of squares over n neighbouring channels
            return (F.local_response_norm(x, self.size, self.alpha, self.beta, self.k),)
        # WITHIN_CHANNEL: Caffe uses AVE pooling of x^2 (padding counted) and shift 1, not k.
        pad = (self.size - 1) // 2
        mean_sq = F.avg_pool2d(x * x, self.size, 1, pad, count_include_pad=True)
        return (x * torch.pow(1.0 + self.alpha * mean_sq, -self.beta),)


class BatchNorm(CaffeLayer):
    """Caffe BatchNorm: blobs mean*s, var*s, s; no affine part (that is a Scale layer)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.batch_norm_param
        channels = shapes[0][1] if len(shapes[0]) > 1 else 1
        self.fraction, self.eps = p.moving_average_fraction, p.eps
        self.global_stats: bool | None = p.use_global_stats if p.HasField(
            "use_global_stats") else None
        for shape in ((channels,), (channels,), (1,)):
            self.add_blob(torch.zeros(shape), trainable=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        use_global = self.global_stats if self.global_stats is not None else not self.training
        view = (1, -1) + (1,) * (x.dim() - 2)
        if use_global:
            s = self.blobs[2][0]
            factor = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
            mean, var = self.blobs[0] * factor, self.blobs[1] * factor
        else:
            dims = [0, *range(2, x.dim())]
            mean = x.mean(dim=dims)
            var = ((x - mean.view(view)) ** 2).mean(dim=dims)
            m = x.numel() // x.shape[1]
            with torch.no_grad():  # Caffe's moving averages, unbiased variance m/(m-1)
                self.blobs[2].mul_(self.fraction).add_(1.0)
                self.blobs[0].mul_(self.fraction).add_(mean.detach())
                correction = m / (m - 1) if m > 1 else 1.0
                self.blobs[1].mul_(self.fraction).add_(var.detach() * correction)
        return ((x - mean.view(view)) / torch.sqrt(var.view(view) + self.eps),)


def add_operand(layer: CaffeLayer, p: Any, shapes: Sequence[Shape], gen: torch.Generator | None,
                *, what: str, value: float) -> tuple[Shape, Shape]:
    """Scale's and Bias's operand (see broadcast_operand); without a second bottom it is the
    layer's first blob, filled by ``p.filler`` (default: the constant ``value``). Returns
    its shape and broadcast view."""
    where = layer.where()
    shape, view, own = broadcast_operand(p, shapes, where, what)
    if own:
        f = p.filler if p.HasField("filler") else None
        layer.add_blob(fill(shape, f, default="constant", value=value, generator=gen,
                            where=where))
    return shape, view


def broadcast_operand(p: Any, shapes: Sequence[Shape], where: str, what: str
                      ) -> tuple[Shape, Shape, bool]:
    """Scale's and Bias's operand: its shape (the second bottom's, or the bottom's axes from
    ``axis``, ``num_axes`` of them, -1 for all), the view that broadcasts it over the bottom,
    and whether it is a blob of the layer (no second bottom)."""
    axis = canonical_axis(p.axis, len(shapes[0]), where)
    if len(shapes) > 1:
        shape = tuple(shapes[1])
    else:
        if p.num_axes < -1:
            raise CaffeFormatError(f"{where}: num_axes {p.num_axes} must be >= -1")
        end = len(shapes[0]) if p.num_axes == -1 else axis + p.num_axes
        if end > len(shapes[0]):
            raise CaffeFormatError(f"{where}: the {what} extends past bottom {shapes[0]}")
        shape = tuple(shapes[0][axis:end])
    if not shape:
        axis = 0  # a scalar: Caffe broadcasts it from axis 0
    if tuple(shapes[0][axis:axis + len(shape)]) != shape:
        raise CaffeFormatError(f"{where}: {what} shape {shape} does not fit bottom {shapes[0]}")
    view = (1,) * axis + shape + (1,) * (len(shapes[0]) - axis - len(shape))
    return shape, view, len(shapes) == 1


class Scale(CaffeLayer):
    """y = x * scale (+ bias); scale is a blob, or the second bottom when there are two."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.scale_param
        where = self.where()
        shape, self.view = add_operand(self, p, shapes, gen, what="scale", value=1.0)
        self.bias_term = bool(p.bias_term)
        if self.bias_term:
            bf = p.bias_filler if p.HasField("bias_filler") else None
            self.add_blob(fill(tuple(shape), bf, default="constant", generator=gen, where=where))

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        blobs = list(self.blobs)
        factor = scale if scale is not None else blobs.pop(0)
        y = x * factor.reshape(self.view)
        if self.bias_term:
            y = y + blobs[0].reshape(self.view)
        return (y,)


class PReLU(CaffeLayer):
    """max(0, x) + a * min(0, x) with one slope per channel (or one shared)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.prelu_param
        if len(shapes[0]) < 2:
            raise CaffeFormatError(f"{self.where()}: needs a bottom of at least 2 axes (N, C, "
                                   f"...), got shape {shapes[0]}")
        shape = () if p.channel_shared else (shapes[0][1],)  # Caffe's shared slope is 0-D
        f = p.filler if p.HasField("filler") else None
        self.add_blob(fill(shape, f, default="constant", value=0.25, generator=gen,
                           where=self.where()))
        self.shared = bool(p.channel_shared)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        slope = self.blobs[0] if self.shared else self.blobs[0].reshape(
            (1, -1) + (1,) * (x.dim() - 2))
        # where(), not clamps: at x == 0 Caffe's gradient is the slope (clamps would add 1).
        return (torch.where(x > 0, x, slope * x),)
