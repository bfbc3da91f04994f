"""What sparknet implements of Caffe 1.0, and the one line that says what it does not.

The schema declares every field of Caffe 1.0, so every Caffe file parses; a definition that
uses a layer type or field sparknet does not implement is refused here, after parsing, with
"unsupported layer type X" or "field F of X is not supported" and what to do instead. These
are pure checks on one LayerParameter; ``net.check_structure`` runs them on every layer of
the phase it builds.
"""

from __future__ import annotations

from typing import Any

from sparknet.errors import CaffeFormatError

# Caffe 1.0's layer registry (REGISTER_LAYER_CLASS in BVLC caffe 1.0.0, git 99bd997).
CAFFE_LAYER_TYPES = (
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Clip",
    "Concat", "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout",
    "DummyData", "ELU", "Eltwise", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten",
    "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData", "InfogainLoss",
    "InnerProduct", "Input", "LRN", "LSTM", "LSTMUnit", "Log", "MVN", "MemoryData",
    "MultinomialLogisticLoss", "PReLU", "Parameter", "Pooling", "Power", "Python", "RNN",
    "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid", "SigmoidCrossEntropyLoss",
    "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "Swish", "TanH", "Threshold",
    "Tile", "WindowData",
)

# Types that cannot exist in sparknet, and why (said in the error and in docs/caffe.md).
NEVER_SUPPORTED = {
    "Python": "it runs the Python module its prototxt names, and sparknet never executes "
              "code because a file names it; write the layer as a torch module instead",
}


def unsupported_type_message(layer: Any, supported: tuple[str, ...]) -> str:
    """The one line for a layer whose type sparknet does not build."""
    where = f"layer {layer.name!r}"
    kind = layer.type or "(none)"
    if kind in NEVER_SUPPORTED:
        return f"{where}: unsupported layer type {kind}: {NEVER_SUPPORTED[kind]}"
    if kind in CAFFE_LAYER_TYPES:
        return (f"{where}: unsupported layer type {kind} (a Caffe 1.0 type sparknet does not "
                f"implement yet; see docs/caffe.md); supported types are {', '.join(supported)}")
    return (f"{where}: unsupported layer type {kind} (not a Caffe 1.0 type); supported types "
            f"are {', '.join(supported)}")


def _field_error(layer: Any, field: str, fix: str) -> CaffeFormatError:
    return CaffeFormatError(f"layer {layer.name!r}: field {field} of {layer.type} is not "
                            f"supported; {fix}")


def check_fields(layer: Any) -> None:
    """Refuse (one line) a field or value of a supported layer that sparknet does not
    implement. Parameters of other layer types are ignored, as Caffe ignores them."""
    if layer.type == "Pooling" and int(layer.pooling_param.pool) == 2:
        raise _field_error(layer, "pool: STOCHASTIC", "use MAX or AVE (Caffe's CPU "
                           "STOCHASTIC pooling is unimplemented too)")
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        if p.axis != 1:
            raise _field_error(layer, f"axis: {p.axis}", "use axis 1 (N, C, H, W)")
        for name in ("kernel_size", "pad", "stride", "dilation"):
            if len(getattr(p, name)) > 2:
                raise _field_error(layer, f"{name} with {len(getattr(p, name))} values",
                                   "sparknet convolves 2-D blobs only; give 1 or 2 values")
