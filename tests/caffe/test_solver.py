"""Solver: config parsing, learning-rate policies, update rules, and Caffe's SGD trace."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparknet.caffe import (
    SolverConfig,
    learning_rate,
    load_net,
    load_solver,
    lr_at,
    make_optimizer,
    parse_solver_text,
    read_caffemodel,
)
from sparknet.caffe.net import ParamSpec
from sparknet.caffe.solver import CaffeSolver
from sparknet.errors import ConfigError

from .conftest import caffe_path


def _close(ours: np.ndarray, caffe: np.ndarray, what: str) -> None:
    # README: within 1e-6 relative (relative to the largest Caffe magnitude, at least 1).
    err = float(np.abs(ours.astype(np.float64) - caffe).max())
    assert err <= 1e-6 * max(1.0, float(np.abs(caffe).max())), f"{what}: {err}"


def test_five_sgd_iterations_match_caffes_trace() -> None:
    folder = caffe_path("reference", "solver")
    config = load_solver(folder / "lenet_sgd_solver.prototxt")
    assert config.net == folder / "lenet_memorydata_train.prototxt"
    trace = np.load(folder / "lenet_sgd_trace.npz")
    meta = json.loads((folder / "trace.json").read_text())
    net = load_net(config.net, folder / "lenet_init.caffemodel", phase="TRAIN")
    solver = make_optimizer(net, config)
    batch = meta["batch"]
    for it in range(config.max_iter):
        assert lr_at(config, it) == pytest.approx(meta["lr_per_iter"][it], rel=1e-6)
        solver.zero_grad()
        rows = slice(it * batch, (it + 1) * batch)
        blobs = net(data=torch.from_numpy(trace["data"][rows]),
                    label=torch.from_numpy(trace["labels"][rows]))
        loss = net.total_loss(blobs)
        value = float(loss.detach())
        loss.backward()
        assert value == pytest.approx(float(trace["losses"][it]), rel=1e-6)
        assert value == pytest.approx(meta["losses"][it], rel=1e-6)
        solver.step()
        if it == 0:
            for key in (k for k in trace.files if k.startswith("iter1:")):
                _, layer, index = key.split(":")
                _close(net.caffe_blobs()[layer][int(index)], trace[key], key)
    final = read_caffemodel(folder / "lenet_iter_5.caffemodel")
    for layer, blobs in final.items():
        for i, caffe in enumerate(blobs):
            _close(net.caffe_blobs()[layer][i], caffe, f"iter5 {layer}:{i}")


def test_sgd_learning_rate_is_applied_inside_the_momentum_buffer() -> None:
    # Caffe: v = m v + lr (g + wd w); torch: v = m v + (g + wd w); w -= lr v. They agree
    # only while lr is constant, so with a changing rate they drift apart.
    w0 = torch.tensor([1.0, -2.0])
    config = SolverConfig(base_lr=0.1, lr_policy="step", gamma=0.5, stepsize=1, momentum=0.9)
    ours = nn.Parameter(w0.clone())
    solver = CaffeSolver([(ours, ParamSpec())], config)
    v, w = torch.zeros(2), w0.clone()
    for it in range(3):
        ours.grad = torch.ones(2)
        solver.step()
        v = 0.9 * v + learning_rate(config, it) * torch.ones(2)
        w = w - v
    torch.testing.assert_close(ours.detach(), w)


@pytest.mark.parametrize(("policy", "extra", "expected"), [
    ("fixed", {}, lambda it: 0.1),
    ("step", {"gamma": 0.5, "stepsize": 3}, lambda it: 0.1 * 0.5 ** (it // 3)),
    ("exp", {"gamma": 0.9}, lambda it: 0.1 * 0.9**it),
    ("inv", {"gamma": 1e-4, "power": 0.75}, lambda it: 0.1 * (1 + 1e-4 * it) ** -0.75),
    ("multistep", {"gamma": 0.1, "stepvalue": (2, 5)},
     lambda it: 0.1 * 0.1 ** ((it >= 2) + (it >= 5))),
    ("poly", {"power": 2.0, "max_iter": 10}, lambda it: 0.1 * (1 - it / 10) ** 2),
    ("sigmoid", {"gamma": 0.5, "stepsize": 4},  # Caffe refuses a negative gamma
     lambda it: 0.1 / (1 + math.exp(-0.5 * (it - 4)))),
])
def test_lr_policies(policy: str, extra: dict[str, object], expected: object) -> None:
    config = SolverConfig(base_lr=0.1, lr_policy=policy, **extra)  # type: ignore[arg-type]
    for it in range(8):
        assert learning_rate(config, it) == pytest.approx(expected(it))  # type: ignore[operator]


def test_unknown_lr_policy_is_an_error() -> None:
    with pytest.raises(ConfigError, match="lr_policy='cosine'.*fixed, step"):
        parse_solver_text('base_lr: 0.1 lr_policy: "cosine"')


def test_solver_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="iter_size=0"):
        SolverConfig(iter_size=0)
    with pytest.raises(ConfigError, match="type='Lion'"):
        SolverConfig(type="Lion")


def test_solver_prototxt_fields_and_relative_net(tmp_path: Path) -> None:
    (tmp_path / "s.prototxt").write_text(
        'net: "nets/a.prototxt" base_lr: 0.5 lr_policy: "multistep" stepvalue: 10 '
        'stepvalue: 20 gamma: 0.1 momentum: 0.8 weight_decay: 0.01 regularization_type: "L1" '
        'iter_size: 2 max_iter: 30 test_iter: 7 test_interval: 5 snapshot: 10 '
        'snapshot_prefix: "snap" solver_type: NESTEROV')
    config = load_solver(tmp_path / "s.prototxt")
    assert config.net == tmp_path / "nets" / "a.prototxt"
    assert (config.type, config.stepvalue, config.iter_size, config.test_iter) == (
        "Nesterov", (10, 20), 2, (7,))
    assert (config.regularization_type, config.snapshot, config.snapshot_prefix) == (
        "L1", 10, "snap")
    assert config.momentum == pytest.approx(0.8)


def test_bvlc_and_v1_solvers_parse() -> None:
    lenet = load_solver(caffe_path("models", "bvlc_prototxt",
                                   "examples__mnist__lenet_solver.prototxt"))
    assert (lenet.lr_policy, lenet.max_iter, lenet.test_interval) == ("inv", 10000, 500)
    cifar = load_solver(caffe_path("models", "v1_everpeace_2014",
                                   "cifar10_quick_solver_lr1.prototxt"))
    assert cifar.lr_policy == "fixed" and cifar.base_lr == pytest.approx(1e-4)


def _one_param_run(kind: str, grads: list[float], **extra: float) -> list[float]:
    config = SolverConfig(type=kind, base_lr=0.1, lr_policy="fixed", **extra)  # type: ignore[arg-type]
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    solver = CaffeSolver([(p, ParamSpec(lr_mult=2.0, decay_mult=0.5))], config)
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        solver.step()
        out.append(float(p.detach()))
    return out


GRADS = [0.5, -1.0, 2.0]


def test_sgd_with_lr_mult_decay_mult_and_l1() -> None:
    w, v, out = 1.0, 0.0, []
    for g in GRADS:
        v = 0.9 * v + 0.2 * (g + 0.01 * 0.5 * math.copysign(1, w))
        w -= v
        out.append(w)
    got = _one_param_run("SGD", GRADS, momentum=0.9, weight_decay=0.01)
    assert got != pytest.approx(out)  # L2 by default
    config = SolverConfig(base_lr=0.1, momentum=0.9, weight_decay=0.01, regularization_type="L1")
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    solver = CaffeSolver([(p, ParamSpec(lr_mult=2.0, decay_mult=0.5))], config)
    for g, want in zip(GRADS, out, strict=True):
        p.grad = torch.tensor([g], dtype=torch.float64)
        solver.step()
        assert float(p.detach()) == pytest.approx(want)


def test_nesterov_formula() -> None:
    w, v, out = 1.0, 0.0, []
    for g in GRADS:
        prev = v
        v = 0.9 * v + 0.2 * (g + 0.01 * 0.5 * w)
        w -= 1.9 * v - 0.9 * prev
        out.append(w)
    assert _one_param_run("Nesterov", GRADS, momentum=0.9, weight_decay=0.01) == pytest.approx(out)


def test_adagrad_formula() -> None:
    w, h, out = 1.0, 0.0, []
    for g in GRADS:
        h += g * g
        w -= 0.2 * g / (math.sqrt(h) + 1e-8)
        out.append(w)
    assert _one_param_run("AdaGrad", GRADS) == pytest.approx(out)


def test_rmsprop_formula() -> None:
    w, h, out = 1.0, 0.0, []
    for g in GRADS:
        h = 0.95 * h + 0.05 * g * g
        w -= 0.2 * g / (math.sqrt(h) + 1e-8)
        out.append(w)
    assert _one_param_run("RMSProp", GRADS, rms_decay=0.95) == pytest.approx(out)


def test_adam_formula() -> None:
    w, m, v, out = 1.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= 0.2 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (math.sqrt(v) + 1e-8)
        out.append(w)
    assert _one_param_run("Adam", GRADS, momentum=0.9) == pytest.approx(out)


def test_iter_size_normalises_accumulated_gradients() -> None:
    config = SolverConfig(base_lr=1.0, iter_size=4)
    p = nn.Parameter(torch.tensor([0.0]))
    solver = CaffeSolver([(p, ParamSpec())], config)
    for _ in range(4):
        (p * 2.0).sum().backward()  # torch sums the four gradients: 8
    solver.step()
    assert float(p.detach()) == pytest.approx(-2.0)


def test_make_optimizer_uses_param_specs_and_skips_batchnorm_stats() -> None:
    net = load_net(caffe_path("models", "resnet50_stem", "test.prototxt"))
    solver = make_optimizer(net, SolverConfig())
    params = {id(p) for g in solver.param_groups for p in g["params"]}
    assert all(id(b) not in params for b in net.layers["bn_conv1"].blobs)
    assert net.param_specs["layers.bn_conv1.blobs.0"].lr_mult == 0.0
    assert len(params) == 4  # conv weight+bias, scale weight+bias


def test_test_interval_and_snapshot_schedule(tmp_path: Path) -> None:
    from sparknet.caffe import should_snapshot, should_test, snapshot_path

    config = SolverConfig(test_interval=5, test_iter=(2,), snapshot=4, max_iter=10,
                          snapshot_prefix="out/lenet")
    assert [i for i in range(11) if should_test(config, i)] == [0, 5, 10]
    assert [i for i in range(1, 11) if should_snapshot(config, i)] == [4, 8, 10]
    assert snapshot_path(config, 8, folder=tmp_path) == tmp_path / "out" / "lenet_iter_8.caffemodel"
