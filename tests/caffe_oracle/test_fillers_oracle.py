"""Caffe's weight fillers on blobs of every rank, against the blobs real Caffe fills.

Caffe's random numbers are not sparknet's, so random fillers are compared by what defines
them: the support (uniform and xavier: every value within the bound, the largest near it),
the standard deviation (gaussian, msra: within 12% on 500+ values), row sums
(positive_unitball), the share of zeros (sparse gaussian); constant and bilinear fillers
exactly. The fan a filler scales by depends on the blob's rank (fan_out of a 1-D bias is
its whole count), which these cases cover: 1-D biases and Scale/PReLU blobs, 2-D
InnerProduct and Embed weights, 3-D Scale blobs, 4-D convolution weights.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from sparknet.caffe import build_net, parse_net_text
from tests.caffe.oracle_cases import NetCase, save_case

from .oracle import run_oracle

pytestmark = pytest.mark.caffe_oracle

FILLERS = {
    "constant": "type: 'constant' value: 0.75",
    "uniform": "type: 'uniform' min: -0.5 max: 1.5",
    "gaussian": "type: 'gaussian' mean: 0.5 std: 2",
    "sparse_gaussian": "type: 'gaussian' std: 1 sparse: 3",
    "xavier_in": "type: 'xavier'",
    "xavier_out": "type: 'xavier' variance_norm: FAN_OUT",
    "xavier_avg": "type: 'xavier' variance_norm: AVERAGE",
    "msra_in": "type: 'msra'",
    "msra_out": "type: 'msra' variance_norm: FAN_OUT",
    "msra_avg": "type: 'msra' variance_norm: AVERAGE",
    "positive_unitball": "type: 'positive_unitball'",
}


def _net(filler: str) -> str:
    f = "{ " + filler + " }"
    return (
        'layer { name: "in" type: "Input" top: "x" top: "idx" '
        "input_param { shape { dim: 2 dim: 6 dim: 5 dim: 5 } shape { dim: 3 } } }\n"
        # a 4-D weight (30, 6, 2, 2) and a 1-D bias of 30
        'layer { name: "conv" type: "Convolution" bottom: "x" top: "c" convolution_param { '
        f"num_output: 30 kernel_size: 2 weight_filler {f} bias_filler {f} }} }}\n"
        # 2-D weight (600 x 150) and 1-D bias
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "i" inner_product_param { '
        f"num_output: 600 weight_filler {f} bias_filler {f} }} }}\n"
        # 3-D Scale blob (6, 5, 5) and 1-D PReLU slopes
        'layer { name: "scale" type: "Scale" bottom: "x" top: "s" scale_param { '
        f"num_axes: 3 filler {f} }} }}\n"
        'layer { name: "prelu" type: "PReLU" bottom: "x" top: "p" '
        f"prelu_param {{ filler {f} }} }}\n"
        # 2-D Embed table
        'layer { name: "embed" type: "Embed" bottom: "idx" top: "e" embed_param { '
        f"num_output: 40 input_dim: 20 bias_term: false weight_filler {f} }} }}\n")


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    count = math.prod(shape)
    return count // shape[0], (count // shape[1] if len(shape) > 1 else count)


def _check(kind: str, key: str, ours: np.ndarray, caffe: np.ndarray) -> list[str]:
    assert ours.shape == caffe.shape, f"{kind} {key}: {ours.shape} vs {caffe.shape}"
    fan_in, fan_out = _fans(caffe.shape)
    n = {"in": fan_in, "out": fan_out, "avg": (fan_in + fan_out) / 2}.get(kind.split("_")[-1],
                                                                          fan_in)
    problems = []
    if kind in ("constant",):
        if not np.array_equal(ours, caffe):
            problems.append(f"{kind} {key}: values differ")
    elif kind in ("uniform",) or kind.startswith("xavier"):
        low, high = (-0.5, 1.5) if kind == "uniform" else (-math.sqrt(3 / n), math.sqrt(3 / n))
        for who, values in (("caffe", caffe), ("ours", ours)):
            span = high - low
            if values.min() < low - 1e-6 or values.max() > high + 1e-6:
                problems.append(f"{kind} {key}: {who}'s values leave [{low:.4g}, {high:.4g}]")
            elif values.size >= 100 and (values.min() > low + 0.1 * span or
                                         values.max() < high - 0.1 * span):
                problems.append(f"{kind} {key}: {who}'s values do not fill [{low:.4g}, "
                                f"{high:.4g}]: [{values.min():.4g}, {values.max():.4g}]")
    elif kind in ("gaussian",) or kind.startswith("msra"):
        if caffe.size >= 500:
            ratio = float(ours.std() / caffe.std())
            if abs(ratio - 1) > 0.12:
                problems.append(f"{kind} {key}: std {ours.std():.4g} vs Caffe's "
                                f"{caffe.std():.4g}")
    elif kind == "sparse_gaussian":
        if caffe.size >= 500:
            ours_zero, caffe_zero = float((ours == 0).mean()), float((caffe == 0).mean())
            if abs(ours_zero - caffe_zero) > 0.06:
                problems.append(f"{kind} {key}: {ours_zero:.3f} zeros vs Caffe's "
                                f"{caffe_zero:.3f}")
    elif kind == "positive_unitball":
        for who, values in (("caffe", caffe), ("ours", ours)):
            sums = values.reshape(values.shape[0], -1).sum(1)
            if values.min() < 0 or np.abs(sums - 1).max() > 1e-5:
                problems.append(f"{kind} {key}: {who}'s rows do not sum to 1")
    return problems


def test_fillers_match_caffe_by_blob_rank(oracle_ready: None, tmp_path: Path) -> None:
    cases = [NetCase(name=kind, layer_type="filler", prototxt=_net(filler), backward=False,
                     arrays={"input:x": np.zeros((2, 6, 5, 5), np.float32),
                             "input:idx": np.zeros(3, np.float32)})
             for kind, filler in FILLERS.items()]
    caffe = run_oracle(list(cases), tmp_path)
    problems = []
    for case in cases:
        result = caffe[case.name]
        assert not isinstance(result, str), f"{case.name}: {result}"
        net = build_net(parse_net_text(case.prototxt), phase="TEST")
        ours = {f"param:{layer}:{i}": blob for layer, blobs in net.caffe_blobs().items()
                for i, blob in enumerate(blobs)}
        assert set(ours) == {k for k in result if k.startswith("param:")}
        for key, value in ours.items():
            problems += _check(case.name, key, value, result[key])
    assert not problems, "\n".join(problems)


def test_bilinear_filler_is_caffes_exactly(oracle_ready: None, tmp_path: Path) -> None:
    cases = [NetCase(name=f"bilinear_{k}", layer_type="filler", backward=False,
                     prototxt='layer { name: "in" type: "Input" top: "x" input_param { shape { '
                     'dim: 1 dim: 3 dim: 4 dim: 4 } } }\nlayer { name: "up" type: '
                     '"Deconvolution" bottom: "x" top: "y" convolution_param { num_output: 3 '
                     f"group: 3 kernel_size: {k} stride: 2 bias_term: false weight_filler {{ "
                     "type: 'bilinear' } } }\n",
                     arrays={"input:x": np.ones((1, 3, 4, 4), np.float32)})
             for k in (1, 2, 3, 4, 5, 7)]
    caffe = run_oracle(list(cases), tmp_path)
    for case in cases:
        result = caffe[case.name]
        assert not isinstance(result, str), result
        net = build_net(parse_net_text(case.prototxt), phase="TEST")
        np.testing.assert_array_equal(net.caffe_blobs()["up"][0], result["param:up:0"])
        folder = os.environ.get("SPARKNET_NET_REFERENCES")  # see test_net_semantics_oracle
        if folder:
            save_case(case, result, Path(folder), found="reference: real Caffe's results")
