"""Random Caffe solver configurations over a small net fed by MemoryData: every solver type
and lr_policy sparknet accepts, with L1/L2 weight decay, lr_mult/decay_mult, iter_size and
clip_gradients."""

from __future__ import annotations

import numpy as np

from sparknet.caffe import build_net, parse_net_text
from sparknet.caffe.solver import LR_POLICIES, SOLVER_TYPES
from tests.caffe.oracle_cases import SolverCase

from .generators import Rng, _float, _pick, layer

BATCH, CHANNELS, SIZE, CLASSES = 2, 2, 4, 3

__all__ = ["LR_POLICIES", "SOLVER_TYPES", "solver_case"]


def _param_specs(rng: Rng, count: int) -> str:
    specs = []
    for _ in range(count):
        fields = [f"{name}: {_pick(rng, [0, 0.5, 1, 2])}" for name in ("lr_mult", "decay_mult")
                  if rng.random() < 0.5]
        specs.append(f"param {{ {' '.join(fields)} }}")
    return " ".join(specs) if rng.random() < 0.7 else ""


def _net(rng: Rng) -> str:
    text = ('name: "fuzz" layer { name: "data" type: "MemoryData" top: "data" top: "label" '
            f"memory_data_param {{ batch_size: {BATCH} channels: {CHANNELS} height: {SIZE} "
            f"width: {SIZE} }} }}\n")
    text += layer("conv", "Convolution", ["data"], ["conv"],
                  f"{_param_specs(rng, 2)} convolution_param {{ num_output: 3 kernel_size: 3 "
                  "pad: 1 }")
    text += layer("relu", "ReLU", ["conv"], ["conv"])
    text += layer("ip", "InnerProduct", ["conv"], ["ip"],
                  f"{_param_specs(rng, 2)} inner_product_param {{ num_output: {CLASSES} }}")
    text += layer("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"])
    return text


def _type_fields(rng: Rng, kind: str) -> list[str]:
    if kind in ("SGD", "Nesterov"):
        momentum = _pick(rng, [0.0, 0.9, _float(rng, 0.1, 0.95)]) if kind == "SGD" else \
            _float(rng, 0.5, 0.95)
        return [f"base_lr: {_float(rng, 0.01, 0.1)}", f"momentum: {momentum}"]
    # Caffe refuses momentum for AdaGrad and RMSProp, and rms_decay outside [0, 1): drawn
    # now and then, both must refuse.
    refused = [f"momentum: {_float(rng, 0.1, 0.9)}"] if rng.random() < 0.1 else []
    if kind == "AdaGrad":
        return [f"base_lr: {_float(rng, 0.01, 0.1)}", f"delta: {_pick(rng, [1e-8, 1e-6])}",
                *refused]
    if kind == "RMSProp":
        decay = _float(rng, 0.9, 0.99) if rng.random() < 0.9 else _pick(rng, [1.0, 1.5, -0.1])
        return [f"base_lr: {_float(rng, 0.001, 0.01)}", f"rms_decay: {decay}", *refused]
    if kind == "AdaDelta":
        return [f"base_lr: {_float(rng, 0.5, 1.0)}", f"momentum: {_float(rng, 0.9, 0.95)}",
                f"delta: {_pick(rng, [1e-8, 1e-6])}"]
    return [f"base_lr: {_float(rng, 0.001, 0.01)}", "momentum: 0.9",
            f"momentum2: {_pick(rng, [0.999, 0.99])}"]


def _policy_fields(rng: Rng, policy: str) -> list[str]:
    fields = [f'lr_policy: "{policy}"']
    if policy in ("step", "exp", "inv", "multistep", "sigmoid"):
        gamma = {"step": _float(rng, 0.1, 0.9), "exp": _float(rng, 0.8, 0.99),
                 "inv": _float(rng, 1e-4, 0.5), "multistep": _float(rng, 0.1, 0.9),
                 "sigmoid": _float(rng, 0.0, 0.5)}[policy]
        fields.append(f"gamma: {gamma}")
    if policy in ("step", "sigmoid"):
        fields.append(f"stepsize: {int(rng.integers(1, 4))}")
    if policy in ("inv", "poly"):
        fields.append(f"power: {_float(rng, 0.5, 2.0)}")
    if policy == "multistep":
        fields += [f"stepvalue: {v}" for v in sorted(rng.choice(np.arange(1, 6), 2,
                                                                 replace=False))]
    return fields


def solver_case(rng: Rng, kind: str, policy: str) -> SolverCase:
    fields = [f'type: "{kind}"', *_type_fields(rng, kind), *_policy_fields(rng, policy),
              "max_iter: 10", "solver_mode: CPU", "display: 0", "snapshot_after_train: false"]
    if rng.random() < 0.6:
        fields.append(f"weight_decay: {_float(rng, 1e-4, 5e-2)}")
        fields.append(f'regularization_type: "{_pick(rng, ["L1", "L2"])}"')
    iter_size = int(rng.integers(1, 4))
    if iter_size > 1:
        fields.append(f"iter_size: {iter_size}")
    if rng.random() < 0.4:
        fields.append(f"clip_gradients: {_float(rng, 0.1, 2.0)}")
    iterations = int(rng.integers(3, 6))
    net = _net(rng)
    built = build_net(parse_net_text(net), phase="TRAIN")
    arrays = {f"param:{name}:{i}": (0.5 * rng.normal(size=b.shape)).astype(np.float32)
              for name, blobs in built.caffe_blobs().items() for i, b in enumerate(blobs)}
    feeds = 2 * BATCH * iter_size  # two distinct batches per sub-iteration, then it cycles
    arrays["data"] = rng.normal(size=(feeds, CHANNELS, SIZE, SIZE)).astype(np.float32)
    arrays["label"] = rng.integers(0, CLASSES, size=(feeds,)).astype(np.float32)
    return SolverCase(name="", solver_type=kind, lr_policy=policy, solver="\n".join(fields),
                      net=net, iterations=iterations, arrays=arrays,
                      note=" ".join(f for f in fields if not f.startswith(("max_iter",
                                                                            "solver_mode",
                                                                            "display",
                                                                            "snapshot"))))
