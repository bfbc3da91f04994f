"""Caffe's weight fillers (filler.hpp) as pure functions of a shape and a torch generator."""

from __future__ import annotations

import math
from typing import Any

import torch

from sparknet.errors import CaffeFormatError

FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "positive_unitball")


def fill(shape: tuple[int, ...], filler: Any | None, *, default: str, value: float = 0.0,
         generator: torch.Generator | None = None, where: str = "") -> torch.Tensor:
    """A float32 tensor of ``shape`` filled as Caffe's FillerParameter ``filler`` says.

    ``filler`` None means Caffe's default for that blob: ``default`` with ``value``.
    """
    kind = filler.type if filler is not None else default
    out = torch.empty(shape, dtype=torch.float32)
    count = out.numel()
    fan_in = count // shape[0] if shape and shape[0] else 1
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else 1
    if filler is not None and filler.sparse >= 0 and kind == "gaussian":
        raise CaffeFormatError(f"{where}: sparse gaussian filler is not supported; drop 'sparse'")
    if filler is None:  # Caffe's default filler for this blob
        if kind != "constant":
            raise CaffeFormatError(f"{where}: default filler {kind!r} needs a FillerParameter")
        return out.fill_(value)
    if kind == "constant":
        return out.fill_(filler.value)
    if kind == "uniform":
        return out.uniform_(filler.min, filler.max, generator=generator)
    if kind == "gaussian":
        return out.normal_(filler.mean, filler.std, generator=generator)
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
