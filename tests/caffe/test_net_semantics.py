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


def test_average_pooling_has_no_mask_top() -> None:
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
            'dim: 4 dim: 4 } } }\nlayer { name: "p" type: "Pooling" bottom: "x" top: "y" '
            'top: "m" pooling_param { pool: AVE kernel_size: 2 } }\n')
    with pytest.raises(CaffeFormatError, match="only MAX pooling has a second"):
        build_net(parse_net_text(text))
