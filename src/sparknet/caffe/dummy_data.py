"""Caffe's DummyData layer: tops filled by fillers, with no bottom.

Caffe 1.0's DummyDataLayer gives each top a shape, from ``shape`` (one for all tops or one
per top) or from the legacy ``num``/``channels``/``height``/``width`` (each given once for
all tops or once per top; not both spellings), and a filler from ``data_filler`` (none:
constant 0; one for all tops; or one per top). A constant filler fills its tops once, when
the net is set up; any other filler draws new values in every forward pass. Caffe's random
numbers are not reproduced: sparknet draws from a torch generator seeded by the net's seed
(the oracle compares the draws by their distribution, the constants exactly).
"""

from __future__ import annotations

from typing import Any

import torch

from sparknet.caffe.fillers import fill
from sparknet.caffe.layers import Shape
from sparknet.errors import CaffeFormatError

LEGACY = ("num", "channels", "height", "width")


def dummy_shapes(layer: Any) -> list[Shape]:
    """The shape of each top, as Caffe's DummyDataLayer::LayerSetUp reads them."""
    p = layer.dummy_data_param
    where = f"layer {layer.name!r} (DummyData)"
    tops = len(layer.top)
    legacy = [list(getattr(p, name)) for name in LEGACY]
    if any(legacy) and len(p.shape):
        raise CaffeFormatError(f"{where}: gives both shape and num/channels/height/width; "
                               "Caffe takes one spelling: keep shape")
    if any(legacy):
        for name, values in zip(LEGACY, legacy, strict=True):
            if len(values) not in (1, tops):
                raise CaffeFormatError(f"{where}: {len(values)} values of {name} for {tops} "
                                       "tops; give one, or one per top")
        return [tuple(int(v[0 if len(v) == 1 else i]) for v in legacy) for i in range(tops)]
    if len(p.shape) not in (1, tops):
        raise CaffeFormatError(f"{where}: {len(p.shape)} shapes for {tops} tops; give one, or "
                               "one per top")
    shapes = [tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim)
              for i in range(tops)]
    if any(d < 0 for s in shapes for d in s):
        raise CaffeFormatError(f"{where}: a negative dimension in {shapes}")
    return shapes


class DummyData:
    """The tops of one DummyData layer: ``tops()`` is one forward pass."""

    def __init__(self, layer: Any, *, generator: torch.Generator) -> None:
        p = layer.dummy_data_param
        where = f"layer {layer.name!r} (DummyData)"
        self.names = tuple(layer.top)
        self.shapes = dummy_shapes(layer)
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, len(self.names)):
            raise CaffeFormatError(f"{where}: {len(fillers)} data_filler for "
                                   f"{len(self.names)} tops; give none, one, or one per top")
        self.fillers = [fillers[0 if len(fillers) == 1 else i] if fillers else None
                        for i in range(len(self.names))]
        self.generator = generator
        self.where = where
        # Constant fillers (and none: constant 0) fill once, at set-up, as in Caffe.
        self.constants = {
            name: fill(shape, filler, default="constant", where=f"{where} top {name!r}")
            for name, shape, filler in zip(self.names, self.shapes, self.fillers, strict=True)
            if filler is None or filler.type == "constant"}
        for name, shape, filler in zip(self.names, self.shapes, self.fillers, strict=True):
            if name not in self.constants:  # a bad filler is refused when the net is built
                fill(shape, filler, default="constant", generator=torch.Generator(),
                     where=f"{where} top {name!r}")

    def tops(self) -> dict[str, torch.Tensor]:
        """One forward pass: the constants, and new draws of the other fillers."""
        out = {}
        for name, shape, filler in zip(self.names, self.shapes, self.fillers, strict=True):
            constant = self.constants.get(name)
            out[name] = constant.clone() if constant is not None else fill(
                shape, filler, default="constant", generator=self.generator,
                where=f"{self.where} top {name!r}")
        return out
