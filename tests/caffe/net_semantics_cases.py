"""Net-level semantics of Caffe's Net, one small case each: anonymous tops of loss layers,
loss weights (0, fractional, on a split loss blob and on a non-loss top), named and shared
parameters (STRICT and PERMISSIVE), a Convolution over two bottoms, the MAX pooling mask
top, Accuracy's per-class top, level/stage rules. Real Caffe's results for them are committed in
tests/data/caffe_net_semantics (written by tests/caffe_oracle/test_net_semantics_oracle.py
with SPARKNET_NET_REFERENCES=DIR) and compared in the default suite."""

from __future__ import annotations

import numpy as np

from tests.caffe.oracle_cases import NetCase


def _input(*blobs: tuple[str, tuple[int, ...]]) -> str:
    tops = " ".join(f'top: "{name}"' for name, _ in blobs)
    shapes = " ".join("shape { " + " ".join(f"dim: {d}" for d in shape) + " }"
                      for _, shape in blobs)
    return f'layer {{ name: "in" type: "Input" {tops} input_param {{ {shapes} }} }}\n'


def _ip(name: str, bottom: str, top: str, outputs: int, params: str = "") -> str:
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" '
            f"{params} inner_product_param {{ num_output: {outputs} }} }}\n")


def net_semantics_cases() -> list[NetCase]:
    rng = np.random.default_rng(25)

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    labels = np.array([0, 2, 1, 2], dtype=np.float32)
    cases = []
    # A loss layer without top: Caffe adds one ("(automatic)", loss weight 1).
    cases.append(NetCase(
        name="loss_without_top", layer_type="SoftmaxWithLoss",
        prototxt=_input(("x", (4, 5)), ("label", (4,))) + _ip("ip", "x", "ip", 3) +
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }\n',
        arrays={"input:x": normal(4, 5), "input:label": labels,
                "param:ip:0": normal(3, 5), "param:ip:1": normal(3)}))
    # Loss weights: 0 on a loss, 2.5 on a loss whose blob another layer also reads (Caffe
    # splits it and counts the loss once), 0.5 on a non-loss top.
    cases.append(NetCase(
        name="loss_weights", layer_type="SoftmaxWithLoss",
        prototxt=_input(("x", (4, 5)), ("label", (4,)), ("target", (4, 3))) +
        _ip("ip", "x", "ip", 3) +
        'layer { name: "ip_weighted" type: "InnerProduct" bottom: "x" top: "side" '
        'loss_weight: 0.5 inner_product_param { num_output: 2 } }\n'
        'layer { name: "zero" type: "EuclideanLoss" bottom: "ip" bottom: "target" '
        'top: "zero" loss_weight: 0 }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
        'top: "loss" loss_weight: 2.5 }\n'
        'layer { name: "double" type: "Power" bottom: "loss" top: "double" '
        "power_param { scale: 2 } }\n",
        arrays={"input:x": normal(4, 5), "input:label": labels, "input:target": normal(4, 3),
                "param:ip:0": normal(3, 5), "param:ip:1": normal(3),
                "param:ip_weighted:0": normal(2, 5), "param:ip_weighted:1": normal(2)}))
    # Shared parameters: ip2 uses ip1's weight and bias (gradients add up, both layers
    # report the sum); ip3's named parameter is shared with nobody.
    shared = 'param { name: "w" } param { name: "b" lr_mult: 2 }'
    w, b = normal(3, 5), normal(3)
    cases.append(NetCase(
        name="shared_params", layer_type="InnerProduct",
        prototxt='force_backward: true\n' + _input(("x", (4, 5)), ("y", (4, 5))) +
        _ip("ip1", "x", "h1", 3, shared) + _ip("ip2", "y", "h2", 3, shared) +
        _ip("ip3", "h2", "h3", 2, 'param { name: "alone" }') +
        'layer { name: "sum" type: "Eltwise" bottom: "h1" bottom: "h2" top: "s" }\n',
        arrays={"input:x": normal(4, 5), "input:y": normal(4, 5), "param:ip1:0": w,
                "param:ip1:1": b, "param:ip2:0": w, "param:ip2:1": b,
                "param:ip3:0": normal(2, 3), "param:ip3:1": normal(2),
                "top_diff:s": normal(4, 3), "top_diff:h3": normal(4, 2)}))
    # One Convolution over two bottoms into two tops, with one set of weights.
    cases.append(NetCase(
        name="convolution_two_bottoms", layer_type="Convolution",
        prototxt='force_backward: true\n' + _input(("a", (2, 3, 5, 5)), ("b", (2, 3, 5, 5))) +
        'layer { name: "conv" type: "Convolution" bottom: "a" bottom: "b" top: "ca" '
        'top: "cb" convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }\n',
        arrays={"input:a": normal(2, 3, 5, 5), "input:b": normal(2, 3, 5, 5),
                "param:conv:0": normal(4, 3, 3, 3), "param:conv:1": normal(4),
                "top_diff:ca": normal(2, 4, 3, 3), "top_diff:cb": normal(2, 4, 3, 3)}))
    # MAX pooling's mask top, with padding and ties (small integers).
    cases.append(NetCase(
        name="max_pooling_mask", layer_type="Pooling",
        prototxt='force_backward: true\n' + _input(("x", (2, 2, 7, 6))) +
        'layer { name: "pool" type: "Pooling" bottom: "x" top: "pooled" top: "mask" '
        "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n",
        arrays={"input:x": rng.integers(-2, 3, (2, 2, 7, 6)).astype(np.float32),
                "top_diff:pooled": normal(2, 2, 4, 4)}))
    # Accuracy's per-class top (a class without examples gets 0), with ignore_label.
    scores = rng.integers(0, 3, (8, 4)).astype(np.float32)  # ties with the true class
    cases.append(NetCase(
        name="accuracy_per_class", layer_type="Accuracy", backward=False,
        prototxt=_input(("scores", (8, 4)), ("label", (8,))) +
        'layer { name: "acc" type: "Accuracy" bottom: "scores" bottom: "label" top: "acc" '
        'top: "per_class" accuracy_param { top_k: 2 ignore_label: 1 } }\n',
        arrays={"input:scores": scores,
                "input:label": np.array([0, 1, 2, 0, 1, 0, 2, 0], dtype=np.float32)}))
    # Level and stage rules: pycaffe's caffe.Net(file, phase) builds at level 0 without
    # stages (the net's own state is what a Solver merges, see test_caffe_support.py).
    cases.append(NetCase(
        name="level_and_stage_rules", layer_type="ReLU", backward=False,
        prototxt=_input(("x", (2, 3))) +
        'layer { name: "deep" type: "ReLU" bottom: "x" top: "a" include { min_level: 1 } }\n'
        'layer { name: "shallow" type: "TanH" bottom: "x" top: "b" '
        "include { max_level: 0 } }\n"
        'layer { name: "deploy" type: "Sigmoid" bottom: "x" top: "c" '
        'include { stage: "deploy" } }\n'
        'layer { name: "not_deploy" type: "AbsVal" bottom: "x" top: "d" '
        'exclude { stage: "deploy" } }\n',
        arrays={"input:x": normal(2, 3)}))
    # share_mode: PERMISSIVE: ip2 (5, 3) and conv (3, 5, 1, 1) read ip1's (3, 5) weight in
    # their own shapes (Caffe's ShareData needs only equal counts); gradients add up.
    permissive = 'param { name: "w" share_mode: PERMISSIVE }'
    w = normal(3, 5)  # drawn last: the cases above keep their stored inputs
    cases.append(NetCase(
        name="shared_params_permissive", layer_type="InnerProduct",
        prototxt='force_backward: true\n' +
        _input(("x", (4, 5)), ("y", (4, 3)), ("z", (2, 5, 3, 3))) +
        _ip("ip1", "x", "h1", 3, 'param { name: "w" }') +
        _ip("ip2", "y", "h2", 5, permissive) +
        f'layer {{ name: "conv" type: "Convolution" bottom: "z" top: "c" {permissive} '
        "convolution_param { num_output: 3 kernel_size: 1 } }\n",
        arrays={"input:x": normal(4, 5), "input:y": normal(4, 3), "input:z": normal(2, 5, 3, 3),
                "param:ip1:0": w, "param:ip1:1": normal(3), "param:ip2:0": w.reshape(5, 3),
                "param:ip2:1": normal(5), "param:conv:0": w.reshape(3, 5, 1, 1),
                "param:conv:1": normal(3), "top_diff:h1": normal(4, 3),
                "top_diff:h2": normal(4, 5), "top_diff:c": normal(2, 3, 3, 3)}))
    return cases
