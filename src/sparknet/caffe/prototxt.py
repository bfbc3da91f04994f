"""Reading Caffe network definitions: parse, upgrade legacy formats, filter by phase.

The upgrades follow Caffe's own (upgrade_proto.cpp): V1 ``layers`` become ``layer`` with
string types and ``param`` specs, ``input``/``input_dim``/``input_shape`` become one Input
layer named "input", and transformation fields move out of the data parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from sparknet.caffe import schema
from sparknet.errors import CaffeFormatError

# Caffe's V1LayerType enum names -> current string layer types.
_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# Fields copied verbatim from a V1 layer to a current layer.
_V1_COPIED = ("name", "bottom", "top", "include", "exclude", "blobs", "loss_weight")

# Data parameters that carried the transformation before transform_param existed.
_DATA_PARAMS = ("data_param", "image_data_param", "window_data_param")
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def parse_text(text: str, message: Any, *, source: str) -> Any:
    """Parse protobuf text into ``message``; errors carry ``source``, line and column."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        # The parser's words quote the file's text; a ``caffe:`` reference may name any file
        # (/etc/shadow), so the error says what kind of problem and where, not what is there.
        where = f"{source}:{err.GetLine()}:{err.GetColumn()}"
        raise CaffeFormatError(
            f"{where}: cannot parse Caffe text format ({_parse_problem(str(err))}); check the "
            "field name and value at that line and column"
        ) from err
    except (ValueError, UnicodeError, RecursionError) as err:
        raise CaffeFormatError(f"{source}: cannot parse Caffe text format "
                               f"({type(err).__name__}): is it a network definition?") from err
    return message


def _parse_problem(message: str) -> str:
    """The kind of a protobuf text-format error, without the text it quotes."""
    for words, kind in (("has no field named", "an unknown field name"),
                        ("Expected", "a syntax error"),
                        ("Couldn't parse", "a value of the wrong type"),
                        ("Enum type", "an unknown enum value"),
                        ("should not have multiple", "a field given twice")):
        if words in message:
            return kind
    return "not Caffe text format"


def read_text(path: str | Path) -> str:
    """The text of a prototxt file, with an actionable error when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise CaffeFormatError(f"cannot read {path}: {err.strerror}; check the path") from err
    except UnicodeDecodeError as err:
        raise CaffeFormatError(f"{path} is not UTF-8 text; is it a binary .caffemodel?") from err


def parse_net_text(text: str, *, source: str = "<prototxt>") -> Any:
    """Parse and upgrade a network definition given as text; returns a NetParameter."""
    net = upgrade_net(parse_text(text, schema.NetParameter(), source=source))
    if not len(net.layer):
        what = "is empty" if not text.strip() else "defines no layers"
        raise CaffeFormatError(f"{source} {what}; give a network definition (.prototxt) with "
                               "at least one layer")
    return net


def read_net(path: str | Path) -> Any:
    """Read and upgrade a ``.prototxt`` network definition; returns a NetParameter."""
    return parse_net_text(read_text(path), source=str(path))


def parse_net_binary(data: bytes, *, source: str = "<caffemodel>") -> Any:
    """Parse and upgrade a binary NetParameter (a ``.caffemodel``)."""
    net = schema.NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, ValueError, RecursionError) as err:
        raise CaffeFormatError(
            f"{source} is not a valid binary Caffe NetParameter (truncated or corrupt?): {err}"
        ) from err
    return upgrade_net(net)


def upgrade_net(net: Any) -> Any:
    """Upgrade a NetParameter in place to the current format (V1 layers, legacy inputs)."""
    if len(net.layers) and len(net.layer):
        raise CaffeFormatError(
            f"net {net.name!r} mixes V1 'layers' and current 'layer' fields; use one format"
        )
    for v1 in net.layers:
        _upgrade_v1_layer(v1, net.layer.add())
    net.ClearField("layers")
    for layer in net.layer:
        _upgrade_data_transform(layer)
    _upgrade_inputs(net)
    return net


def _upgrade_v1_layer(v1: Any, layer: Any) -> None:
    for field in _V1_COPIED:
        if field in ("bottom", "top", "include", "exclude", "blobs", "loss_weight"):
            getattr(layer, field).extend(getattr(v1, field))
        elif v1.HasField(field):
            setattr(layer, field, getattr(v1, field))
    if v1.HasField("layer"):
        raise CaffeFormatError(
            f"V1 layer {v1.name or v1.layer.name!r}: field layer of V1LayerParameter (the V0 "
            "format) is not supported; upgrade the file with Caffe's upgrade_net_proto_text")
    if v1.HasField("type"):
        type_name = schema.enum_name("V1LayerType", v1.type)
        if type_name not in _V1_TYPES:
            raise CaffeFormatError(f"V1 layer {v1.name!r}: unsupported layer type {type_name}; "
                                   "give the layer its type")
        layer.type = _V1_TYPES[type_name]
    count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(count):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for field in v1.DESCRIPTOR.fields:
        if field.name.endswith("_param") and v1.HasField(field.name):
            getattr(layer, field.name).CopyFrom(getattr(v1, field.name))


def _upgrade_data_transform(layer: Any) -> None:
    for param_name in _DATA_PARAMS:
        if not layer.HasField(param_name):
            continue
        param = getattr(layer, param_name)
        for field in _TRANSFORM_FIELDS:
            # WindowData scales by its own window_data_param.scale (Caffe's load_batch).
            if param_name == "window_data_param" and field == "scale":
                continue
            if param.HasField(field):
                setattr(layer.transform_param, field, getattr(param, field))
                param.ClearField(field)


def _upgrade_inputs(net: Any) -> None:
    if not (len(net.input_shape) or len(net.input_dim)):
        net.ClearField("input")  # a legacy caffemodel's bare input names carry nothing
        return
    if len(net.input_dim) and len(net.input_dim) != 4 * len(net.input):
        raise CaffeFormatError(
            f"net {net.name!r} has {len(net.input)} inputs but {len(net.input_dim)} input_dim "
            "values; give exactly 4 input_dim (num, channels, height, width) per input"
        )
    if len(net.input_shape) and len(net.input_shape) != len(net.input):
        raise CaffeFormatError(
            f"net {net.name!r} has {len(net.input)} inputs but {len(net.input_shape)} "
            "input_shape entries; give one input_shape per input"
        )
    layer = schema.LayerParameter(name="input", type="Input")
    for i, name in enumerate(net.input):
        layer.top.append(name)
        shape = layer.input_param.shape.add()
        if len(net.input_shape):
            shape.CopyFrom(net.input_shape[i])
        else:
            shape.dim.extend(net.input_dim[4 * i : 4 * i + 4])
    layers = [layer, *net.layer]
    net.ClearField("layer")
    net.layer.extend(layers)
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)


def _rule_matches(rule: Any, phase: int, state: Any) -> bool:
    """Caffe's Net::StateMeetsRule: phase, level bounds, required and excluded stages."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def filter_phase(net: Any, phase: str) -> Any:
    """A copy of ``net`` holding only the layers that Caffe runs in ``phase`` (TRAIN/TEST);
    levels and stages are matched against the net's own ``state`` (level 0, no stages by
    default), as Caffe's Net does when no solver overrides them."""
    if phase not in ("TRAIN", "TEST"):
        raise CaffeFormatError(f"phase={phase!r} is not a Caffe phase; use 'TRAIN' or 'TEST'")
    number = schema.enum_number("Phase", phase)
    out = schema.NetParameter()
    out.CopyFrom(net)
    out.ClearField("layer")
    for layer in net.layer:
        if len(layer.include) and len(layer.exclude):
            raise CaffeFormatError(
                f"layer {layer.name!r} has both include and exclude rules; keep one of them"
            )
        if len(layer.include):
            keep = any(_rule_matches(rule, number, net.state) for rule in layer.include)
        else:
            keep = not any(_rule_matches(rule, number, net.state) for rule in layer.exclude)
        if keep:
            out.layer.add().CopyFrom(layer)
    return out


def insert_splits(net: Any) -> Any:
    """A copy of ``net`` with Caffe's automatic Split layers (insert_splits.cpp).

    A top consumed by more than one bottom (or by one bottom and a loss) is fanned out by a
    Split layer, with Caffe's names, so every blob name matches what Caffe reports.
    """
    last_top: dict[str, tuple[int, int]] = {}
    source: dict[tuple[int, int], tuple[int, int]] = {}
    count: dict[tuple[int, int], int] = {}
    loss_weight: dict[tuple[int, int], float] = {}
    for i, layer in enumerate(net.layer):
        for j, blob in enumerate(layer.bottom):
            if blob not in last_top:
                later = [x.name for x in net.layer[i:] if blob in x.top]
                why = (f"only a later layer ({later[0]!r}) produces it: a cycle or layers out "
                       "of order; order the layers so that each reads what earlier ones wrote"
                       if later else "no layer produces it; fix the bottom name")
                raise CaffeFormatError(
                    f"layer {layer.name!r} ({layer.type}) reads blob {blob!r}, but {why}")
            source[(i, j)] = last_top[blob]
            count[last_top[blob]] = count.get(last_top[blob], 0) + 1
        for j, blob in enumerate(layer.top):
            last_top[blob] = (i, j)
            weight = layer.loss_weight[j] if j < len(layer.loss_weight) else 0.0
            if weight:
                loss_weight[(i, j)] = weight
                count[(i, j)] = count.get((i, j), 0) + 1
    out = schema.NetParameter()
    out.CopyFrom(net)
    out.ClearField("layer")
    used: dict[tuple[int, int], int] = {}
    for i, layer in enumerate(net.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j, blob in enumerate(layer.bottom):
            top = source[(i, j)]
            if count[top] > 1:
                producer = net.layer[top[0]].name
                new.bottom[j] = _split_blob(producer, blob, top[1], used.get(top, 0))
                used[top] = used.get(top, 0) + 1
        for j, blob in enumerate(layer.top):
            n = count.get((i, j), 0)
            if n > 1:
                split = out.layer.add(name=f"{blob}_{layer.name}_{j}_split", type="Split")
                split.bottom.append(blob)
                split.top.extend(_split_blob(layer.name, blob, j, k) for k in range(n))
                if (i, j) in loss_weight:  # the loss is carried by the first split top
                    split.loss_weight.append(loss_weight[(i, j)])
                    split.loss_weight.extend([0.0] * (n - 1))
                    # As Caffe: never counted twice. Caffe clears the layer's weights (a
                    # loss layer's default 1 then only sets a diff the Split overwrites);
                    # explicit zeros say the same to CaffeNet, which would add that 1.
                    new.ClearField("loss_weight")
                    new.loss_weight.extend([0.0] * len(layer.top))
    return out


def _split_blob(layer_name: str, blob: str, top_index: int, k: int) -> str:
    return f"{blob}_{layer_name}_{top_index}_split_{k}"
