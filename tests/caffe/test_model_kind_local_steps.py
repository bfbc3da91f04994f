"""A worker's local steps with a Caffe solver against a plain loop of CaffeSolver steps."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparknet.caffe import TransformConfig, load_solver, make_optimizer, parse_solver_text
from sparknet.caffe.model_kind import CaffeInput, CaffeModel, build_model, parse_caffe_ref
from sparknet.config import OptimizerConfig
from sparknet.data.shards import Shard
from sparknet.engine.local_steps import LocalPlan, RoundState, batch_indices, run_local_steps
from sparknet.flat import FlatLayout, flatten_state

SCALE = 0.00390625  # LeNet's transform_param


def _shard(fashion: Any, n: int = 256) -> Shard:
    split = fashion["train"]
    return Shard(split.images[:n].copy(), split.labels[:n].copy())


def _model(net: Path) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return build_model(parse_caffe_ref(f"caffe:{net}#1,28,28"))


def _reference(model: torch.nn.Module, solver_path: Path, shard: Shard, *, tau: int,
               batch_size: int, step_offset: int, seed: int) -> tuple[np.ndarray, Any]:
    """tau CaffeSolver steps over the batches the engine draws, each of iter_size batches."""
    config = load_solver(solver_path)
    solver = make_optimizer(model, config)
    solver.iteration = step_offset
    micro = config.iter_size
    batches = batch_indices(num_examples=len(shard), batch_size=batch_size, steps=tau * micro,
                            step_offset=step_offset * micro, seed=seed, partition=0)
    for step in range(tau):
        solver.zero_grad()
        for batch in batches[step * micro: (step + 1) * micro]:
            x = torch.from_numpy(shard.features[batch].astype(np.float32) * np.float32(SCALE))
            y = torch.from_numpy(shard.labels[batch])
            F.cross_entropy(model(x), y).backward()
        solver.step()
    layout = FlatLayout.of(model)
    return flatten_state(model, layout)[0], solver


def _plan(solver_path: Path, *, tau: int, batch_size: int, step_offset: int, seed: int,
          policy: str = "reset") -> LocalPlan:
    optimizer = OptimizerConfig(name="caffe", caffe_solver=solver_path.read_text(),
                                momentum_policy=policy)
    return LocalPlan(seed=seed, round_index=2, step_offset=step_offset, tau=tau,
                     batch_size=batch_size,
                     optimizer=CaffeModel(key="lenet-solver").local_optimizer(optimizer),
                     input_prep=CaffeInput(TransformConfig(scale=SCALE), (1, 28, 28)),
                     compression="none", sample_weight=False, threads=1)


@pytest.mark.parametrize("iter_size", [1, 3])
def test_local_steps_equal_caffe_solver_loop(fashion: Any, lenet_files: tuple[Path, Path],
                                             tmp_path: Path, iter_size: int) -> None:
    solver, net = lenet_files
    text = solver.read_text().replace('"examples/mnist/lenet_train_test.prototxt"', f'"{net}"')
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(text + f"\niter_size: {iter_size}\n")
    shard = _shard(fashion)
    model = _model(net)
    reference_model = copy.deepcopy(model)
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    # step_offset 40: the inv lr_policy must follow the worker's global iteration.
    plan = _plan(solver_path, tau=5, batch_size=16, step_offset=40, seed=11)
    result = run_local_steps(model, layout, shard, RoundState(floats, ints), plan, partition=0,
                             device=torch.device("cpu"))
    expected, _ = _reference(reference_model, solver_path, shard, tau=5, batch_size=16,
                             step_offset=40, seed=11)
    got = flatten_state(model, layout)[0]
    assert np.abs(got - expected).max() <= 1e-6
    assert np.abs(got - floats).max() > 1e-4  # the steps did move the weights
    assert result.samples == 5 * iter_size * 16


def test_averaged_momentum_is_the_caffe_history(fashion: Any, lenet_files: tuple[Path, Path],
                                                solver_copy: Path) -> None:
    _, net = lenet_files
    shard = _shard(fashion)
    model = _model(net)
    reference_model = copy.deepcopy(model)
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    plan = _plan(solver_copy, tau=3, batch_size=16, step_offset=0, seed=5, policy="average")
    state = RoundState(floats, ints, momentum=np.zeros(layout.num_floats, np.float32))
    result = run_local_steps(model, layout, shard, state, plan, partition=0,
                             device=torch.device("cpu"))
    _, solver = _reference(reference_model, solver_copy, shard, tau=3, batch_size=16,
                           step_offset=0, seed=5)
    assert result.momentum_sum is not None
    history = {name: solver.state[p]["history"] for name, p in
               reference_model.named_parameters()}
    for entry in layout.floats:
        got = result.momentum_sum[entry.offset: entry.offset + entry.size]
        np.testing.assert_allclose(got, history[entry.name].reshape(-1).numpy(), atol=1e-7)
    assert np.abs(result.momentum_sum).max() > 0


# A net that reads its examples in order as the time steps of one LSTM sequence (cont is 1
# everywhere, made from the data): the state carries from step to step, and pass to pass.
SEQUENCE_NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 1 dim: 1 dim: 4 dim: 3 } shape { dim: 1 } } }
layer { name: "zero" type: "Reduction" bottom: "data" top: "zero"
        reduction_param { axis: 2 coeff: 0 } }
layer { name: "cont" type: "Power" bottom: "zero" top: "cont" power_param { shift: 1 } }
layer { name: "lstm" type: "LSTM" bottom: "data" bottom: "cont" top: "h"
        recurrent_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
                          bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "h" top: "scores"
        inner_product_param { num_output: 10 axis: 2 weight_filler { type: "gaussian" } } }
layer { name: "flat" type: "Flatten" bottom: "scores" top: "logits" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" top: "loss" }
"""
SGD = 'type: "SGD" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9\n'


def test_recurrent_state_carries_within_a_task_and_starts_from_zero(tmp_path: Path) -> None:
    net_path = tmp_path / "sequence.prototxt"
    net_path.write_text(SEQUENCE_NET)
    rng = np.random.default_rng(0)
    shard = Shard(rng.normal(size=(48, 1, 4, 3)).astype(np.float32),
                  rng.integers(0, 10, 48).astype(np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = build_model(parse_caffe_ref(f"caffe:{net_path}"))
    fresh = copy.deepcopy(model)
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    optimizer = OptimizerConfig(name="caffe", caffe_solver=SGD, momentum_policy="reset")
    plan = LocalPlan(seed=4, round_index=0, step_offset=0, tau=4, batch_size=8,
                     optimizer=CaffeModel(key="seq").local_optimizer(optimizer),
                     input_prep=CaffeModel(key="seq").input_prep(_spec()),
                     compression="none", sample_weight=False, threads=1)

    def task() -> np.ndarray:
        run_local_steps(model, layout, shard, RoundState(floats, ints), plan, partition=0,
                        device=torch.device("cpu"))
        return flatten_state(model, layout)[0]

    first = task()
    # The same module again (a Python worker's cached network): the task starts from zero.
    np.testing.assert_array_equal(task(), first)

    def loop(*, carry: bool) -> np.ndarray:
        reference = copy.deepcopy(fresh)
        solver = make_optimizer(reference, parse_solver_text(SGD))
        batches = batch_indices(num_examples=48, batch_size=8, steps=4, step_offset=0, seed=4,
                                partition=0)
        for batch in batches:
            if not carry:
                reference.net.reset_carried_state()
            solver.zero_grad()
            x = torch.from_numpy(shard.features[batch])
            F.cross_entropy(reference(x), torch.from_numpy(shard.labels[batch])).backward()
            solver.step()
        return flatten_state(reference, layout)[0]

    assert np.abs(first - loop(carry=True)).max() <= 1e-6
    assert np.abs(first - loop(carry=False)).max() > 1e-4  # the carry did change the steps


def _spec() -> Any:
    from sparknet.data.shards import InputSpec

    return InputSpec(shape=(1, 4, 3), num_classes=10, scale=1.0)
