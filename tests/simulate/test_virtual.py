"""Virtual workers in one process, checked against a plain PyTorch loop and NumPy sums."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparknet.averaging import encode_delta
from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec, split_into_shards
from sparknet.engine.aggregate import combine_in_order
from sparknet.engine.auto_tau import AutoTau
from sparknet.engine.local_steps import WorkerResult, batch_indices
from sparknet.engine.state import initial_state
from sparknet.errors import ConfigError
from sparknet.flat import flatten_state, load_flat_state
from sparknet.models.registry import resolve_model
from sparknet.simulate import simulate, tree_combine

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


@pytest.fixture(scope="module")
def small(fashion):
    train, test = fashion["train"], fashion["test"]
    return (train.images[:1024], train.labels[:1024]), (test.images[:300], test.labels[:300])


def _config(**engine):
    settings = {"num_workers": 1, "tau": 4, "batch_size": 16, "rounds": 3, "eval_every": 1}
    settings.update(engine)
    return TrainConfig(model="lenet", seed=3, engine=EngineConfig(**settings),
                       optimizer=OptimizerConfig(lr=0.02, momentum=0.9,
                                                 momentum_policy="average"),
                       outer=OuterConfig(name="average"))


def test_one_worker_carrying_momentum_is_a_plain_sgd_loop(small):
    train, test = small
    config = _config()
    result = simulate(train, config=config, spec=SPEC, test=test)

    # Reference: one PyTorch model trained by torch.optim.SGD on the same batches.
    torch.set_num_threads(1)
    source = resolve_model("lenet")
    layout, floats, ints = initial_state(source, config.seed)
    model = source.build()
    load_flat_state(model, layout, floats, ints)
    shard = split_into_shards(*train, 1, seed=config.seed)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for batch in batch_indices(num_examples=len(shard), batch_size=16, steps=12,
                               step_offset=0, seed=config.seed, partition=0):
        x = torch.from_numpy(shard.features[batch]).float() * (1 / 255)
        loss = F.cross_entropy(model(x), torch.from_numpy(shard.labels[batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected, _ = flatten_state(model, layout)
    np.testing.assert_allclose(result.floats, expected, rtol=1e-4, atol=1e-6)
    assert [r["steps_per_worker"] for r in result.records] == [4, 8, 12]
    assert [r["samples"] for r in result.records] == [64, 128, 192]
    assert all(r["test_accuracy"] is not None for r in result.records)


def test_same_config_and_seed_give_the_same_weights(small):
    train, _ = small
    config = TrainConfig(model="lenet", seed=1,
                         engine=EngineConfig(num_workers=3, tau=2, batch_size=8, rounds=2,
                                             tree_fan_in=2),
                         optimizer=OptimizerConfig(momentum_policy="reset"),  # deltas only
                         outer=OuterConfig(name="nesterov", compression="int8"))
    first = simulate(train, config=config, spec=SPEC)
    second = simulate(train, config=config, spec=SPEC)
    np.testing.assert_array_equal(first.floats, second.floats)
    assert first.records[-1]["bytes_per_worker"] == encode_delta(first.floats, "int8").nbytes


def test_stop_ends_the_run_after_the_first_evaluated_round_that_asks(small):
    train, test = small
    result = simulate(train, config=_config(rounds=5, eval_every=2), spec=SPEC, test=test,
                      stop=lambda record: True)
    assert [r["round"] for r in result.records] == [1, 2]
    assert [r["round"] for r in result.curve()] == [2]


@pytest.mark.slow
def test_auto_tau_uses_the_modelled_overhead(small):
    train, _ = small
    policy = AutoTau()
    config = _config(tau="auto", rounds=policy.probe_rounds + 1, eval_every=0)
    result = simulate(train, config=config, spec=SPEC, overhead_seconds=0.5)
    probes = result.tau_decisions[: policy.probe_rounds]
    assert probes == [policy.probe_tau] * policy.probe_rounds
    # 5% overhead with S = 0.5 s needs tau*C >= 9.5 s: far more steps than the probes.
    assert result.tau_decisions[-1] > 100
    replay = simulate(train, config=config, spec=SPEC, tau_decisions=result.tau_decisions)
    np.testing.assert_array_equal(replay.floats, result.floats)


def test_tree_combine_sums_like_the_engines_tree():
    rng = np.random.default_rng(0)
    results = [WorkerResult(delta=rng.normal(size=10).astype(np.float32), weight=1.0,
                            loss_sum=1.0, correct=1, samples=4, ints_max=np.zeros(0, np.int64),
                            momentum_sum=None, bytes_sent=40) for _ in range(5)]
    tree = tree_combine(results, fan_in=2)
    # Level 1 groups (0,1) (2,3) (4); level 2 groups (01, 23) (4); then the driver's sum.
    pairs = [combine_in_order([(0, results[0]), (1, results[1])]),
             combine_in_order([(2, results[2]), (3, results[3])]),
             combine_in_order([(4, results[4])])]
    expected = combine_in_order([(0, combine_in_order([(0, pairs[0]), (1, pairs[1])])),
                                 (1, combine_in_order([(2, pairs[2])]))])
    np.testing.assert_array_equal(tree.delta, expected.delta)
    np.testing.assert_allclose(tree.delta, sum(r.delta for r in results), rtol=1e-6)
    assert tree.workers == 5 and tree.samples == 20


def test_bad_settings_are_one_line_errors(small):
    train, _ = small
    with pytest.raises(ConfigError, match="overhead"):
        simulate(train, config=_config(), spec=SPEC, overhead_seconds=-1)
    with pytest.raises(ConfigError, match="num_workers"):
        simulate((train[0][:2], train[1][:2]), config=_config(num_workers=3), spec=SPEC)
