"""Caffe's Net semantics against real Caffe's stored results (tests/data/caffe_net_semantics):
every blob after the forward pass and every input and parameter gradient of each case in
net_semantics_cases.py; plus what sharing means for the module (one parameter object, its
solver multipliers) and the one-line refusals of shares Caffe refuses too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparknet.caffe import build_net, parse_net_text
from sparknet.errors import CaffeFormatError

from .net_semantics_cases import net_semantics_cases
from .oracle_cases import compare_net, load_case, run_sparknet_net

FOLDER = Path(__file__).resolve().parents[1] / "data" / "caffe_net_semantics"
CASES = {case.name: case for case in net_semantics_cases()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_matches_real_caffe(name: str) -> None:
    stored, caffe = load_case(FOLDER / name)
    case = CASES[name]
    # The stored reference is for exactly this definition and these inputs.
    assert stored.prototxt == case.prototxt
    assert set(stored.arrays) == set(case.arrays)
    for key, value in case.arrays.items():
        np.testing.assert_array_equal(stored.arrays[key], value)
    problems = compare_net(case, run_sparknet_net(case), caffe)
    assert not problems, "\n".join(problems)


def test_shared_blob_is_one_parameter_with_the_given_multiplier() -> None:
    net = build_net(parse_net_text(CASES["shared_params"].prototxt))
    ip1, ip2 = net.layer_module("ip1"), net.layer_module("ip2")
    assert ip1 is not None and ip2 is not None
    assert ip1.blobs[0] is ip2.blobs[0] and ip1.blobs[1] is ip2.blobs[1]
    # The owner's specs stand for both uses; lr_mult 2 was given for the bias.
    assert net.param_specs["layers.ip1.blobs.1"].lr_mult == 2.0
    assert "layers.ip2.blobs.0" not in net.param_specs
    assert len(list(net.parameters())) == 4  # ip1's two blobs and ip3's two


INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'


@pytest.mark.parametrize(("second", "message"), [
    ('param { name: "w" } inner_product_param { num_output: 4 }',
     r"has shape \(4, 3\), but layer 'a' owns it with shape \(2, 3\)"),
    ('param { name: "w" lr_mult: 3 } inner_product_param { num_output: 2 }',
     "lr_mult 3.0 differs from the 1.0 of layer 'a'"),
])
def test_shares_caffe_refuses_are_one_line(second: str, message: str) -> None:
    text = (INPUT + 'layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" '
            'param { name: "w" lr_mult: 1 } inner_product_param { num_output: 2 } }\n'
            f'layer {{ name: "b" type: "InnerProduct" bottom: "x" top: "z" {second} }}\n')
    with pytest.raises(CaffeFormatError, match=message):
        build_net(parse_net_text(text))


def test_permissive_share_needs_one_count() -> None:
    # PERMISSIVE relaxes the shape, not the count (Caffe's CHECK_EQ on count()).
    text = (INPUT + 'layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" '
            'param { name: "w" } inner_product_param { num_output: 2 } }\n'
            'layer { name: "b" type: "InnerProduct" bottom: "x" top: "z" '
            'param { name: "w" share_mode: PERMISSIVE } inner_product_param { num_output: 3 } }\n')
    with pytest.raises(CaffeFormatError, match=r"shape \(3, 3\) \(9 values\), but layer 'a' "
                       r"owns it with shape \(2, 3\) \(6\); share_mode: PERMISSIVE needs"):
        build_net(parse_net_text(text))


def test_permissive_share_is_one_parameter_seen_in_each_shape(tmp_path: Path) -> None:
    from sparknet.caffe import read_caffemodel

    case = CASES["shared_params_permissive"]
    net = build_net(parse_net_text(case.prototxt))
    ip1, ip2, conv = (net.layer_module(n) for n in ("ip1", "ip2", "conv"))
    assert ip1 is not None and ip2 is not None and conv is not None
    assert ip2.blobs.parameter(0) is ip1.blobs[0] is conv.blobs.parameter(0)
    assert tuple(ip2.blobs[0].shape) == (5, 3) and tuple(conv.blobs[0].shape) == (3, 5, 1, 1)
    assert len(list(net.parameters())) == 4  # the weight once, three biases
    # Weights go in and out in each layer's own shape, as Caffe's net.save writes them.
    _, caffe = load_case(FOLDER / "shared_params_permissive")
    weights = {layer: [caffe[f"param:{layer}:{i}"] for i in range(2)]
               for layer in ("ip1", "ip2", "conv")}
    net.load_caffe_blobs(weights)
    net.to_caffemodel(tmp_path / "permissive.caffemodel")
    written = read_caffemodel(tmp_path / "permissive.caffemodel")
    for layer, blobs in weights.items():
        for ours, theirs in zip(written[layer], blobs, strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_average_pooling_has_no_mask_top() -> None:
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
            'dim: 4 dim: 4 } } }\nlayer { name: "p" type: "Pooling" bottom: "x" top: "y" '
            'top: "m" pooling_param { pool: AVE kernel_size: 2 } }\n')
    with pytest.raises(CaffeFormatError, match="only MAX pooling has a second"):
        build_net(parse_net_text(text))


BILINEAR = sorted(p.with_suffix("") for p in FOLDER.glob("bilinear_*.json"))


@pytest.mark.parametrize("path", BILINEAR, ids=[p.name for p in BILINEAR])
def test_bilinear_filler_is_real_caffes(path: Path) -> None:
    # Deconvolution weights filled by Caffe's bilinear filler (kernel sizes 1-7), no weights
    # given: the parameters after set-up must be Caffe's, bit for bit.
    case, caffe = load_case(path)
    net = build_net(parse_net_text(case.prototxt), phase="TEST")
    np.testing.assert_array_equal(net.caffe_blobs()["up"][0], caffe["param:up:0"])


def test_filler_fans_follow_blob_rank() -> None:
    # Caffe's fans: fan_in = count / shape[0]; fan_out = count / shape[1], or the whole
    # count for a 1-D blob. A xavier FAN_OUT bias of 600 values stays within sqrt(3/600).
    import math

    import torch

    from sparknet.caffe import schema
    from sparknet.caffe.fillers import fill

    filler = schema.message_class("FillerParameter")(type="xavier", variance_norm=1)
    gen = torch.Generator().manual_seed(0)
    for shape, fan in (((600,), 600), ((30, 20), 30), ((8, 6, 2, 2), 32)):
        values = fill(shape, filler, default="constant", generator=gen)
        bound = math.sqrt(3.0 / fan)
        assert float(values.abs().max()) <= bound
        assert float(values.abs().max()) >= 0.8 * bound
