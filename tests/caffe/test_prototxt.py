"""Reading definitions: current and V1 formats, legacy inputs, phases, splits, errors."""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparknet.caffe import build_net, parse_net_text, read_net
from sparknet.caffe.prototxt import filter_phase, insert_splits, parse_net_binary
from sparknet.errors import CaffeFormatError, SparknetError

from .conftest import caffe_path

V1_TEXT = """
name: "v1"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 8 input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 3 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool" top: "ip"
  inner_product_param { num_output: 4 } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""


def test_v1_layers_are_upgraded_as_caffe_does() -> None:
    net = parse_net_text(V1_TEXT)
    assert [(x.name, x.type) for x in net.layer] == [
        ("input", "Input"), ("conv", "Convolution"), ("relu", "ReLU"), ("pool", "Pooling"),
        ("ip", "InnerProduct"), ("prob", "Softmax")]
    assert list(net.layer[0].input_param.shape[0].dim) == [2, 1, 8, 8]
    conv = net.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1.0, 1.0), (2.0, 0.0)]
    assert not len(net.layers) and not len(net.input) and not len(net.input_dim)


def test_v1_param_specs_reach_the_module() -> None:
    net = build_net(parse_net_text(V1_TEXT))
    specs = {k: (v.lr_mult, v.decay_mult) for k, v in net.param_specs.items()}
    assert specs["layers.conv.blobs.1"] == (2.0, 0.0)
    assert specs["layers.ip.blobs.0"] == (1.0, 1.0)
    assert net(torch.zeros(2, 1, 8, 8))["prob"].shape == (2, 4)


def test_input_shape_and_input_layer_forms_agree() -> None:
    by_shape = parse_net_text('input: "a" input_shape { dim: 1 dim: 2 } input: "b" '
                              'input_shape { dim: 3 }')
    assert [list(s.dim) for s in by_shape.layer[0].input_param.shape] == [[1, 2], [3]]
    assert list(by_shape.layer[0].top) == ["a", "b"]


def test_v1_data_layer_transform_and_phases() -> None:
    net = read_net(caffe_path("models", "v1_everpeace_2014", "lenet_train_test.prototxt"))
    train, test = filter_phase(net, "TRAIN"), filter_phase(net, "TEST")
    assert [x.type for x in train.layer].count("Data") == 1
    assert "Accuracy" not in [x.type for x in train.layer]
    assert "Accuracy" in [x.type for x in test.layer]
    assert train.layer[0].transform_param.scale == pytest.approx(0.00390625)


def test_legacy_transform_fields_move_to_transform_param() -> None:
    net = parse_net_text('layers { name: "d" type: DATA top: "data" top: "label" '
                         'data_param { source: "x" batch_size: 4 scale: 0.5 crop_size: 3 '
                         'mirror: true } }')
    t = net.layer[0].transform_param
    assert (t.scale, t.crop_size, t.mirror) == (0.5, 3, True)
    assert not net.layer[0].data_param.HasField("scale")


def test_exclude_rule() -> None:
    net = parse_net_text('layer { name: "a" type: "Input" top: "x" exclude { phase: TEST } '
                         'input_param { shape { dim: 1 } } }')
    assert len(filter_phase(net, "TRAIN").layer) == 1
    assert len(filter_phase(net, "TEST").layer) == 0


def test_split_layers_get_caffes_names() -> None:
    net = parse_net_text('layer { name: "in" type: "Input" top: "x" input_param { shape { '
                         'dim: 1 } } } layer { name: "a" type: "ReLU" bottom: "x" top: "a" } '
                         'layer { name: "b" type: "ReLU" bottom: "x" top: "b" }')
    split = insert_splits(net)
    assert [x.name for x in split.layer] == ["in", "x_in_0_split", "a", "b"]
    assert list(split.layer[2].bottom) == ["x_in_0_split_0"]
    assert list(split.layer[3].bottom) == ["x_in_0_split_1"]


def test_malformed_prototxt_reports_line_and_column() -> None:
    text = 'name: "n"\nlayer {\n  name: "a"\n  typo_field: 3\n}\n'
    with pytest.raises(CaffeFormatError, match=r"<prototxt>:4:\d+"):
        parse_net_text(text)


def test_unterminated_message_reports_position(tmp_path: object) -> None:
    with pytest.raises(CaffeFormatError, match=r":2:\d+"):
        parse_net_text('layer {\n  name: "a"')


def test_wrong_enum_value_is_an_error() -> None:
    with pytest.raises(CaffeFormatError, match="1:"):
        parse_net_text('layers { type: NOT_A_TYPE }')


def test_unknown_bottom_is_an_error() -> None:
    with pytest.raises(CaffeFormatError, match="reads blob .x., but no layer produces it"):
        insert_splits(parse_net_text('layer { name: "r" type: "ReLU" bottom: "x" top: "y" }'))


def test_unsupported_layer_type_names_layer_type_and_supported() -> None:
    net = parse_net_text('input: "x" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2 '
                         'layer { name: "weird" type: "MyLayer" bottom: "x" top: "y" }')
    with pytest.raises(CaffeFormatError, match=r"'weird'.*MyLayer.*Convolution.*Softmax"):
        build_net(net)


def test_unknown_data_shape_says_to_pass_input_shapes() -> None:
    with pytest.raises(CaffeFormatError, match="input_shapes"):
        build_net(read_net(caffe_path("models", "bvlc_prototxt",
                                      "examples__mnist__lenet_train_test.prototxt")))


def test_missing_file_is_a_project_error(tmp_path: object) -> None:
    with pytest.raises(CaffeFormatError, match="cannot read"):
        read_net("/nonexistent/net.prototxt")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_fuzz_prototxt_text_only_raises_project_errors(text: str) -> None:
    with contextlib.suppress(SparknetError):
        build_net(parse_net_text(text))


_FRAGMENTS = st.sampled_from([
    'layer {', '}', 'name: "a"', 'type: "ReLU"', 'type: "Convolution"', 'bottom: "x"',
    'top: "x"', 'top: "y"', 'input: "x"', 'input_dim: 2', 'input_dim: -1', 'input_dim: 0',
    'convolution_param { num_output: 2 kernel_size: 3 }', 'pooling_param { kernel_size: 9 }',
    'type: "Pooling"', 'type: "InnerProduct"', 'inner_product_param { num_output: 3 }',
    'layers { type: RELU', 'include { phase: TRAIN }', 'type: "Slice"', 'type: "Concat"',
    'type: "Eltwise"', 'eltwise_param { coeff: 1 }', 'type: "Reshape"',
    'reshape_param { shape { dim: -1 dim: 5 } }', 'type: "Input"',
    'input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } }', 'type: "SoftmaxWithLoss"',
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAGMENTS, max_size=25))
def test_fuzz_structured_prototxt_only_raises_project_errors(parts: list[str]) -> None:
    try:
        net = build_net(parse_net_text("\n".join(parts)))
        net(**{n: torch.zeros(s) for n, s in net.input_shapes.items() if s is not None})
    except SparknetError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_caffemodel_bytes_only_raise_project_errors(data: bytes) -> None:
    from sparknet.caffe.weights import weights_from_net

    with contextlib.suppress(SparknetError):
        weights_from_net(parse_net_binary(data), source="fuzz")


def _single(layer_text: str, shape: tuple[int, ...]) -> object:
    dims = " ".join(f"dim: {d}" for d in shape)
    return build_net(parse_net_text(
        f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }} '
        f'layer {{ name: "l" bottom: "x" top: "y" {layer_text} }}'))


def test_deconvolution_is_the_transpose_of_convolution() -> None:
    net = _single('type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 '
                  'stride: 2 pad: 1 group: 2 }', (1, 2, 5, 5))
    module = net.layers["l"]  # type: ignore[attr-defined]
    assert tuple(module.blobs[0].shape) == (2, 2, 3, 3)  # Caffe: (C_in, out/group, kh, kw)
    assert net.blob_shapes["y"] == (1, 4, 9, 9)  # type: ignore[attr-defined]


def test_lrn_within_channel_formula() -> None:
    net = _single('type: "LRN" lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 '
                  'alpha: 2 beta: 0.5 }', (1, 1, 3, 3))
    x = torch.arange(9.0).reshape(1, 1, 3, 3) / 9
    y = net(x)["y"].numpy()  # type: ignore[operator]
    xs = x.numpy()[0, 0]
    padded = __import__("numpy").pad(xs * xs, 1)
    for r in range(3):
        for c in range(3):
            scale = 1 + 2 * padded[r:r + 3, c:c + 3].sum() / 9  # divisor counts the padding
            assert y[0, 0, r, c] == pytest.approx(xs[r, c] * scale**-0.5, rel=1e-6)
