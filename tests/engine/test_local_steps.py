import numpy as np
import pytest
import torch

from sparknet.config import OptimizerConfig
from sparknet.data.shards import InputSpec, Shard, split_into_shards
from sparknet.engine.aggregate import combine_in_order, mean_delta
from sparknet.engine.local_steps import (
    LocalPlan,
    RoundState,
    batch_indices,
    run_local_steps,
)
from sparknet.flat import FlatLayout, flatten_state, load_flat_state
from sparknet.models import LeNet, SmallCNN
from sparknet.models.kinds import ScaledInput, TorchOptimizer

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
CPU = torch.device("cpu")


def _plan(**overrides):
    values = dict(seed=3, round_index=0, step_offset=0, tau=1, batch_size=8,
                  optimizer=OptimizerConfig(lr=0.1, momentum=0.0),
                  compression="none", sample_weight=False, threads=1)
    values.update(overrides)
    values["optimizer"] = TorchOptimizer(values["optimizer"])
    return LocalPlan(input_prep=ScaledInput(SPEC.shape, SPEC.scale), **values)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=n).astype(np.int64))


def test_batches_cover_each_shard_without_replacement_per_pass():
    idx = batch_indices(num_examples=40, batch_size=8, steps=5, step_offset=0, seed=1,
                        partition=0)
    assert idx.shape == (5, 8)
    assert sorted(idx.reshape(-1).tolist()) == list(range(40))
    # continuing from a step offset gives the same stream as one long call
    whole = batch_indices(num_examples=40, batch_size=8, steps=12, step_offset=0, seed=1,
                          partition=0)
    tail = batch_indices(num_examples=40, batch_size=8, steps=7, step_offset=5, seed=1,
                         partition=0)
    assert np.array_equal(whole[5:], tail)
    other = batch_indices(num_examples=40, batch_size=8, steps=5, step_offset=0, seed=1,
                          partition=1)
    assert not np.array_equal(idx, other)


def test_shards_smaller_than_a_batch_still_give_full_batches():
    idx = batch_indices(num_examples=3, batch_size=8, steps=4, step_offset=2, seed=0,
                        partition=5)
    assert idx.shape == (4, 8) and idx.max() < 3


def test_tau_one_average_equals_sgd_on_concatenated_batch():
    """One round, tau = 1, plain SGD, equal shards, mean loss == single-process SGD."""
    x, y = _data(64)
    shards = split_into_shards(x, y, 2, seed=0)
    assert len(shards[0]) == len(shards[1])
    torch.manual_seed(0)
    model = LeNet()
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    plan = _plan()
    results = [(k, run_local_steps(model, layout, shards[k], RoundState(floats, ints), plan,
                                   partition=k, device=CPU)) for k in range(2)]
    averaged = floats + mean_delta(combine_in_order(results))

    reference = LeNet()
    load_flat_state(reference, layout, floats, ints)
    parts = [batch_indices(num_examples=len(s), batch_size=8, steps=1, step_offset=0, seed=3,
                           partition=k)[0] for k, s in enumerate(shards)]
    pairs = list(zip(shards, parts, strict=True))
    xb = torch.from_numpy(np.concatenate([s.features[i] for s, i in pairs]))
    yb = torch.from_numpy(np.concatenate([s.labels[i] for s, i in pairs]))
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(reference(xb.float() / 255), yb)
    opt.zero_grad()
    loss.backward()
    opt.step()
    expected, _ = flatten_state(reference, layout)
    assert np.abs(averaged - expected).max() <= 1e-6
    assert np.abs(averaged - floats).max() > 1e-4  # the step did move the weights


@pytest.mark.parametrize("policy", ["reset", "average"])
def test_same_inputs_give_bit_identical_results(policy):
    """A retried task (same seed, round, partition, state) reproduces its output exactly."""
    x, y = _data(50)
    torch.manual_seed(1)
    model = SmallCNN()  # dropout and BatchNorm: randomness and buffers
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    momentum = np.zeros_like(floats) if policy == "average" else None
    plan = _plan(tau=3, round_index=4, step_offset=12,
                 optimizer=OptimizerConfig(lr=0.05, momentum_policy=policy))
    first = run_local_steps(model, layout, Shard(x, y), RoundState(floats, ints, momentum), plan,
                            partition=1, device=CPU)
    second = run_local_steps(SmallCNN(), layout, Shard(x, y), RoundState(floats, ints, momentum),
                             plan, partition=1, device=CPU)
    assert np.array_equal(first.delta.data, second.delta.data)
    assert np.array_equal(first.ints_max, second.ints_max)
    assert first.loss_sum == second.loss_sum
    assert first.ints_max.tolist() == [3] * len(layout.ints)  # counters advanced by tau
    if policy == "average":
        assert np.array_equal(first.momentum_sum, second.momentum_sum)
        assert np.abs(first.momentum_sum).max() > 0
