"""Learning-rate schedules (step, cosine, warm-up) for the built-in local optimizers: a pure
function of the local step, applied step by step by the optimizer the worker makes, set as a
config setting, a CLI flag and a Spark ML Param."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sparknet.cli.main import build_parser
from sparknet.config import OptimizerConfig, TrainConfig, scheduled_lr
from sparknet.errors import ConfigError
from sparknet.models.kinds import TorchOptimizer


def test_the_schedules_are_pure_functions_of_the_step() -> None:
    step = OptimizerConfig(lr=0.1, lr_schedule="step", lr_decay_steps=10, lr_gamma=0.5)
    assert [scheduled_lr(step, s) for s in (0, 9, 10, 25)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.025])
    cosine = OptimizerConfig(lr=0.2, lr_schedule="cosine", lr_decay_steps=100)
    assert [scheduled_lr(cosine, s) for s in (0, 50, 100, 500)] == pytest.approx(
        [0.2, 0.1, 0.0, 0.0], abs=1e-12)
    warm = OptimizerConfig(lr=0.1, lr_warmup_steps=4)
    assert [scheduled_lr(warm, s) for s in range(6)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    both = OptimizerConfig(lr=0.1, lr_schedule="cosine", lr_decay_steps=8, lr_warmup_steps=2)
    assert scheduled_lr(both, 0) == pytest.approx(0.05)
    assert scheduled_lr(both, 4) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_the_worker_optimizer_follows_the_schedule_step_by_step(name: str) -> None:
    config = OptimizerConfig(name=name, lr=0.1, lr_schedule="step", lr_decay_steps=3,
                             lr_gamma=0.5, lr_warmup_steps=2)
    module = nn.Linear(3, 1)
    # A round that starts after 4 local steps: its rates continue the schedule from step 4.
    optimizer = TorchOptimizer(config).make(module, iteration=4)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        module(torch.ones(2, 3)).sum().backward()
        optimizer.step()
    assert rates == pytest.approx([scheduled_lr(config, s) for s in range(4, 9)])
    assert rates == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.025])


def test_a_schedule_changes_the_weights_and_stays_deterministic() -> None:
    from sparknet.data.shards import InputSpec
    from sparknet.engine.loop import LoopOptions, run_rounds
    from sparknet.engine.runner import InProcessRunner
    from sparknet.models.registry import resolve_model

    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64))
    model = resolve_model("sparknet_testing.nets:mlp", args='{"inputs": 4, "outputs": 3}')

    def fit(**optimizer: object) -> np.ndarray:
        config = TrainConfig.from_dict({
            "model": "sparknet_testing.nets:mlp", "model_args": '{"inputs": 4, "outputs": 3}',
            "optimizer": {"lr": 0.1, **optimizer},
            "engine": {"num_workers": 2, "tau": 4, "batch_size": 8, "rounds": 3,
                       "eval_every": 0}})
        runner = InProcessRunner(arrays, num_workers=2, seed=config.seed)
        return run_rounds(runner, config=config, model=model,
                          spec=InputSpec(shape=(4,), num_classes=3, scale=1.0),
                          options=LoopOptions()).floats

    cosine = {"lr_schedule": "cosine", "lr_decay_steps": 12, "lr_warmup_steps": 2}
    np.testing.assert_array_equal(fit(**cosine), fit(**cosine))
    assert not np.array_equal(fit(**cosine), fit())


def test_cli_flags_params_and_checks() -> None:
    from sparknet.cli.train import config_from_args
    from sparknet.ml import SparkNetEstimator

    args = build_parser().parse_args(["train", "--lr-schedule", "cosine", "--lr-decay-steps",
                                      "500", "--lr-warmup-steps", "20"])
    config, _ = config_from_args(args)
    assert (config.optimizer.lr_schedule, config.optimizer.lr_decay_steps,
            config.optimizer.lr_warmup_steps) == ("cosine", 500, 20)
    estimator = SparkNetEstimator(lrSchedule="step", lrDecaySteps=100, lrGamma=0.5)
    assert estimator.train_config().optimizer.lr_gamma == 0.5
    with pytest.raises(ConfigError, match="lr_gamma=2.0 is invalid"):
        estimator.setLrGamma(2.0)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="lr_schedule 'cosine' needs lr_decay_steps > 0"):
        SparkNetEstimator(lrSchedule="cosine").train_config()
