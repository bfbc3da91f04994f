"""Summaries of Caffe files: layers, top blob shapes and parameter counts.

``format_inspection(path)`` is what ``sparknet caffe inspect FILE`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sparknet.caffe.net import CaffeNet, UnknownShapeError, check_structure
from sparknet.caffe.prototxt import read_net
from sparknet.caffe.weights import read_binaryproto, read_weights


@dataclass(frozen=True, kw_only=True)
class LayerRow:
    """One layer: its tops with shapes (None: unknown) and its parameter count."""

    name: str
    type: str
    tops: tuple[tuple[str, tuple[int, ...] | None], ...]
    blob_shapes: tuple[tuple[int, ...], ...]
    params: int


@dataclass(frozen=True, kw_only=True)
class Inspection:
    path: str
    kind: str  # "definition", "weights" or "mean"
    name: str
    rows: tuple[LayerRow, ...]
    note: str = ""

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)


def inspect_file(path: str | Path) -> Inspection:
    """Inspect a ``.prototxt``, ``.caffemodel``, ``.caffemodel.h5`` or ``.binaryproto``."""
    path = Path(path)
    text = str(path)
    if text.endswith(".binaryproto"):
        mean = read_binaryproto(path)
        row = LayerRow(name="blob", type="BlobProto", tops=(), blob_shapes=(mean.shape,),
                       params=mean.size)
        return Inspection(path=text, kind="mean", name=path.name, rows=(row,))
    if text.endswith((".caffemodel", ".h5", ".hdf5")):
        weights = read_weights(path)
        rows = tuple(LayerRow(name=n, type="", tops=(), blob_shapes=tuple(a.shape for a in bs),
                              params=sum(a.size for a in bs)) for n, bs in weights.items())
        return Inspection(path=text, kind="weights", name=path.name, rows=rows)
    return _inspect_definition(path)


def _inspect_definition(path: Path) -> Inspection:
    net_param = read_net(path)
    for phase in ("TRAIN", "TEST"):  # a definition that cannot be built is an error
        check_structure(net_param, phase=phase)
    note, net = "", None
    try:
        net = CaffeNet(net_param, phase="TEST")
    except UnknownShapeError as err:  # sound, but only the data source knows a shape
        note = f"shapes unknown: {err}"
    rows = []
    for layer in net.definition.layer if net else net_param.layer:
        module = net.layer_module(layer.name) if net else None
        blobs = tuple(tuple(b.shape) for b in module.blobs) if module is not None else ()
        tops = tuple((t, net.blob_shapes.get(t) if net else None) for t in layer.top)
        rows.append(LayerRow(name=layer.name, type=layer.type, tops=tops, blob_shapes=blobs,
                             params=sum(math.prod(s) for s in blobs)))
    return Inspection(path=str(path), kind="definition", name=net_param.name, rows=tuple(rows),
                      note=note)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape) or "scalar"


def format_inspection(path: str | Path) -> str:
    """A table of the file's layers, top blob shapes and parameter counts."""
    report = inspect_file(path)
    lines = [f"{report.path}: {report.kind} {report.name!r}"]
    header = ("layer", "type", "tops", "blobs", "params")
    table = [header]
    for r in report.rows:
        tops = ", ".join(f"{t} {_shape(s)}" for t, s in r.tops)
        blobs = ", ".join(_shape(s) for s in r.blob_shapes)
        table.append((r.name, r.type, tops, blobs, f"{r.params:,}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append(f"total parameters: {report.total_params:,}")
    if report.note:
        lines.append(report.note)
    return "\n".join(lines)
