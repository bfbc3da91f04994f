"""Export of Caffe-defined networks to ONNX (input -> logits) with torch.onnx.export."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from sparknet.caffe.net import CaffeLogits
from sparknet.errors import CaffeFormatError, require_package


def export_onnx(model: CaffeLogits, path: str | Path, *, opset: int = 17) -> None:
    """Write ``model`` (from ``logits_model``) as ONNX, for its declared input shape.

    Caffe's pooling output sizes are fixed at export, so the file takes that shape only
    (the batch size too).
    """
    require_package("onnx", extra="onnx", needed_for="ONNX export")
    shape = model.net.input_shapes.get(model.input_name)
    if shape is None:
        raise CaffeFormatError(f"input {model.input_name!r} has no known shape; build the "
                               "model with input_shapes to export it")
    was = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # Shapes read in forward are meant to be constants: the export is for one shape.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
            warnings.filterwarnings("ignore", message="Constant folding")
            torch.onnx.export(model, (torch.zeros(shape),), str(path), input_names=["input"],
                              output_names=["logits"], opset_version=opset, dynamo=False)
    finally:
        model.train(was)
