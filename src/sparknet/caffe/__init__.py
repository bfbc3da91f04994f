"""Caffe compatibility: read Caffe definitions, weights and solvers; run and train them.

Entry points used by the engine and the CLI:

- ``load_net(prototxt, weights=None, *, phase="TEST", allow_extra_weights=False)`` -> CaffeNet,
  an nn.Module whose forward returns every top blob by name;
- ``logits_model(prototxt, weights=None)`` -> nn.Module mapping the input tensor to logits;
- ``load_solver(path)`` -> SolverConfig; ``make_optimizer(module, config)``;
  ``lr_at(config, iteration)``;
- ``format_inspection(path)`` (in ``sparknet.caffe.inspect``) for ``sparknet caffe inspect``.
"""

from sparknet.caffe.net import (
    SUPPORTED_TYPES,
    CaffeLogits,
    CaffeNet,
    LoadReport,
    ParamSpec,
    build_net,
    load_net,
    logits_model,
)
from sparknet.caffe.onnx_export import export_onnx
from sparknet.caffe.prototxt import parse_net_text, read_net
from sparknet.caffe.solver import (
    CaffeSolver,
    SolverConfig,
    learning_rate,
    load_solver,
    lr_at,
    make_optimizer,
    parse_solver_text,
    should_snapshot,
    should_test,
    snapshot_path,
)
from sparknet.caffe.transform import (
    TransformConfig,
    image_data_batch,
    read_image,
    transform_batch,
)
from sparknet.caffe.weights import (
    read_binaryproto,
    read_caffemodel,
    read_caffemodel_h5,
    read_weights,
    write_caffemodel_h5,
)

__all__ = [
    "SUPPORTED_TYPES", "CaffeLogits", "CaffeNet", "CaffeSolver", "LoadReport", "ParamSpec",
    "SolverConfig", "TransformConfig", "build_net", "export_onnx", "image_data_batch",
    "learning_rate", "load_net", "load_solver", "logits_model", "lr_at", "make_optimizer",
    "parse_net_text", "parse_solver_text", "read_binaryproto", "read_caffemodel",
    "read_caffemodel_h5", "read_image", "read_net", "read_weights", "should_snapshot",
    "should_test", "snapshot_path", "transform_batch",
    "write_caffemodel_h5",
]
