"""ONNX export of a trained network for serving outside Spark.

The graph takes ``features`` ``[batch, *inputShape]`` float32 holding the same values as the
DataFrame's feature column (decoded pixels 0..255 for images), multiplies by ``inputScale``,
prepares them as the model kind does at test time (``inputScale``, or a Caffe net's
transform_param without random mirroring), runs the network and returns ``probability``
(the objective's head: softmax, sigmoid, or the output itself for regression) and ``logits``,
both ``[batch, numClasses]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from sparknet.errors import require_package
from sparknet.flat import load_flat_state
from sparknet.ml.persistence import SavedNetwork
from sparknet.models.kinds import InputPrep
from sparknet.models.objectives import MULTICLASS, Objective


class ServingNetwork(nn.Module):
    """features -> (probability, logits), with the input preparation inside the graph.

    ``probability`` is the objective's serving head on the logits (``Objective.serving``):
    the softmax for multiclass, the sigmoid for binary and multilabel, the network's output
    itself for regression.
    """

    def __init__(self, network: nn.Module, prep: InputPrep, objective: Objective = MULTICLASS
                 ) -> None:
        super().__init__()
        self.network = network
        self.prep = prep
        self.objective = objective

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(self.prep.serving(features))
        return self.objective.serving(logits), logits


def serving_network(saved: SavedNetwork) -> ServingNetwork:
    model = saved.kind()
    module = model.build()
    load_flat_state(module, saved.layout, saved.floats, saved.ints)
    prep = model.input_prep(saved.input_spec())
    return ServingNetwork(module, prep, saved.objective_kind()).eval()


def export_onnx(saved: SavedNetwork, path: str | Path, *, opset: int = 17) -> Path:
    """Writes ``path`` (ONNX, dynamic batch size) and returns it."""
    require_package("onnx", extra="onnx", needed_for="ONNX export")
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
