"""Caffe's DummyData forward: shapes in both spellings, constant fillers once, random fillers
drawn anew in each pass, a top the caller gives wins, bad definitions in one line. Real
Caffe's DummyData is compared in tests/caffe_oracle/test_data_layers_oracle.py."""

from __future__ import annotations

import pytest
import torch

from sparknet.caffe import build_net, parse_net_text
from sparknet.errors import CaffeFormatError


def net(param: str, tops: int = 1, after: str = "") -> object:
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    return build_net(parse_net_text(
        f'layer {{ name: "d" type: "DummyData" {names} dummy_data_param {{ {param} }} }}\n'
        + after), phase="TEST")


def test_constant_and_default_fillers_in_both_shape_spellings() -> None:
    out = net("num: 2 channels: 3 height: 4 height: 1 width: 5 "
              "data_filler { type: 'constant' value: 0.5 }", tops=2).forward()
    assert tuple(out["t0"].shape) == (2, 3, 4, 5) and tuple(out["t1"].shape) == (2, 3, 1, 5)
    assert torch.all(out["t0"] == 0.5) and torch.all(out["t1"] == 0.5)
    zeros = net("shape { dim: 3 } shape { dim: 2 dim: 2 }", tops=2).forward()
    assert torch.all(zeros["t0"] == 0) and tuple(zeros["t1"].shape) == (2, 2)


def test_random_fillers_draw_in_every_pass_and_feed_later_layers() -> None:
    model = net("shape { dim: 200 dim: 3 } data_filler { type: 'uniform' min: 1 max: 2 }",
                after='layer { name: "r" type: "Power" bottom: "t0" top: "p" '
                      "power_param { shift: -1 } }\n")
    first, second = model.forward(), model.forward()
    assert bool(torch.all((first["t0"] >= 1) & (first["t0"] <= 2)))
    assert not torch.equal(first["t0"], second["t0"])
    assert torch.equal(first["p"], first["t0"] - 1)


def test_a_given_top_is_used_instead() -> None:
    model = net("shape { dim: 2 dim: 3 }")
    given = torch.ones(2, 3)
    assert torch.equal(model.forward(t0=given)["t0"], given)


@pytest.mark.parametrize(("param", "tops", "message"), [
    ("shape { dim: 2 } num: 1 channels: 1 height: 1 width: 1", 1, "both shape and num"),
    ("shape { dim: 2 } shape { dim: 3 }", 3, "2 shapes for 3 tops"),
    ("num: 1 num: 2 channels: 1 height: 1 width: 1", 3, "2 values of num for 3 tops"),
    ("shape { dim: 2 } data_filler { type: 'constant' } data_filler { type: 'constant' }", 3,
     "2 data_filler for 3 tops"),
    ("shape { dim: 2 } data_filler { type: 'nonsense' }", 1, "filler type 'nonsense'"),
])
def test_bad_definitions_are_one_line(param: str, tops: int, message: str) -> None:
    with pytest.raises(CaffeFormatError, match=message):
        net(param, tops=tops)
