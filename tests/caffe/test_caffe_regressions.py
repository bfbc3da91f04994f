"""Every mismatch the real-Caffe oracle found (tests/caffe_oracle), kept as a small case with
Caffe's own results (tests/data/caffe_regressions: NAME.prototxt, NAME.npz, NAME.json saying
what mismatched before the fix). Runs in the default suite; needs no Caffe."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from .oracle_cases import (
    NetCase,
    compare_net,
    compare_solver,
    load_case,
    run_sparknet_net,
    run_sparknet_solver,
)

FOLDER = Path(__file__).resolve().parents[1] / "data" / "caffe_regressions"
CASES = sorted(p.with_suffix("") for p in FOLDER.glob("*.json"))


def test_regression_cases_are_present() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_regression_case_matches_caffe(path: Path) -> None:
    case, caffe = load_case(path)
    assert caffe, "the case holds none of Caffe's results"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # in-place Power warns by design
        if isinstance(case, NetCase):
            problems = compare_net(case, run_sparknet_net(case), caffe)
        else:
            problems = compare_solver(run_sparknet_solver(case), caffe)
    assert not problems, "\n".join(problems)


def test_top_of_an_in_place_layer_is_an_output() -> None:
    # Caffe's rule: a blob no later layer reads is an output, even when an in-place layer
    # read it first (found by the oracle: in-place nets had no outputs to start backward).
    from sparknet.caffe import build_net, parse_net_text

    net = build_net(parse_net_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
        "inner_product_param { num_output: 2 } }\n"
        'layer { name: "relu" type: "ReLU" bottom: "y" top: "y" }\n'))
    assert net.output_names == ["y"]
