"""Caffe's weight fillers (filler.hpp) as pure functions of a shape and a torch generator."""

from __future__ import annotations

import math
from typing import Any

import torch

from sparknet.errors import CaffeFormatError

FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "positive_unitball",
                "bilinear")


def fill(shape: tuple[int, ...], filler: Any | None, *, default: str, value: float = 0.0,
         generator: torch.Generator | None = None, where: str = "") -> torch.Tensor:
    """A float32 tensor of ``shape`` filled as Caffe's FillerParameter ``filler`` says.

    ``filler`` None means Caffe's default for that blob: ``default`` with ``value``.
    """
    kind = filler.type if filler is not None else default
    out = torch.empty(shape, dtype=torch.float32)
    count = out.numel()
    # Caffe's fans by blob rank: fan_in = count / shape[0]; fan_out = count / shape[1], or
    # the whole count for a 1-D blob (a bias).
    fan_in = count // shape[0] if shape and shape[0] else 1
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else max(count, 1)
    if filler is not None and filler.sparse >= 0 and kind != "gaussian":
        raise CaffeFormatError(f"{where}: field sparse of the {kind} filler is not supported "
                               "(Caffe: only the gaussian filler is sparse); drop it")
    if filler is None:  # Caffe's default filler for this blob
        if kind != "constant":
            raise CaffeFormatError(f"{where}: default filler {kind!r} needs a FillerParameter")
        return out.fill_(value)
    if kind == "constant":
        return out.fill_(filler.value)
    if kind == "uniform":
        return out.uniform_(filler.min, filler.max, generator=generator)
    if kind == "gaussian":
        out.normal_(filler.mean, filler.std, generator=generator)
        if filler.sparse >= 0:  # each weight kept with probability sparse / num_outputs
            if not shape:
                raise CaffeFormatError(f"{where}: a sparse gaussian filler needs a blob of at "
                                       "least one axis")
            keep = min(1.0, filler.sparse / shape[0])
            mask = torch.rand(shape, generator=generator) < keep
            out.mul_(mask.to(out.dtype))
        return out
    if kind == "bilinear":
        return _bilinear(out, where)
    if kind in ("xavier", "msra"):
        n = {0: fan_in, 1: fan_out, 2: (fan_in + fan_out) / 2.0}[filler.variance_norm]
        if kind == "xavier":
            bound = math.sqrt(3.0 / n)
            return out.uniform_(-bound, bound, generator=generator)
        return out.normal_(0.0, math.sqrt(2.0 / n), generator=generator)
    if kind == "positive_unitball":
        out.uniform_(0.0, 1.0, generator=generator)
        rows = out.reshape(shape[0], -1)
        rows /= rows.sum(dim=1, keepdim=True)
        return out
    raise CaffeFormatError(
        f"{where}: filler type {kind!r} is not supported; use one of {', '.join(FILLER_TYPES)}"
    )


def _bilinear(out: torch.Tensor, where: str) -> torch.Tensor:
    """Caffe's bilinear upsampling kernel, the same (K, K) for every (out, in) pair."""
    if out.dim() != 4 or out.shape[2] != out.shape[3]:
        raise CaffeFormatError(f"{where}: the bilinear filler needs a 4-D blob with a square "
                               f"kernel, got shape {tuple(out.shape)}")
    size = int(out.shape[3])
    f = math.ceil(size / 2.0)
    # In float32 throughout, as Caffe's Dtype arithmetic.
    c = torch.tensor((size - 1) / (2.0 * f), dtype=torch.float32)
    axis = 1 - torch.abs(torch.arange(size, dtype=torch.float32) / f - c)
    return out.copy_((axis[:, None] * axis[None, :]).expand_as(out))
