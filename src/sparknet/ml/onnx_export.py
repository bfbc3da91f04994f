"""ONNX export of a trained network for serving outside Spark.

The graph takes ``features`` ``[batch, *inputShape]`` float32 holding the same values as the
DataFrame's feature column (decoded pixels 0..255 for images), multiplies by ``inputScale``,
runs the network and returns ``probability`` ``[batch, numClasses]`` (softmax) and ``logits``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from sparknet.flat import load_flat_state
from sparknet.ml.persistence import SavedNetwork
from sparknet.models.registry import model_source


class ServingNetwork(nn.Module):
    """features -> (probability, logits), with the input scaling inside the graph."""

    def __init__(self, network: nn.Module, scale: float) -> None:
        super().__init__()
        self.network = network
        self.scale = scale

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(features * self.scale)
        return torch.softmax(logits, dim=1), logits


def serving_network(saved: SavedNetwork) -> ServingNetwork:
    module = model_source(saved.network).build()
    load_flat_state(module, saved.layout, saved.floats, saved.ints)
    return ServingNetwork(module, saved.input_scale).eval()


def export_onnx(saved: SavedNetwork, path: str | Path, *, opset: int = 17) -> Path:
    """Writes ``path`` (ONNX, dynamic batch size) and returns it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    module = serving_network(saved)
    example = torch.zeros((2, *saved.input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        # The TorchScript exporter needs no onnxscript; the graph is a plain feed-forward net.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(target), input_names=["features"],
                          output_names=["probability", "logits"], opset_version=opset,
                          dynamic_axes={"features": {0: "batch"}, "probability": {0: "batch"},
                                        "logits": {0: "batch"}},
                          dynamo=False)
    return target
