"""Early stopping in the round loop (in-process runner): it stops after ``patience``
evaluations without a better validation metric and returns the best round's weights."""

from __future__ import annotations

import numpy as np
import pytest

from sparknet.config import EngineConfig, OptimizerConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.engine.early_stop import EarlyStopping
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.run_dir import TrainResult
from sparknet.engine.runner import InProcessRunner
from sparknet.errors import ConfigError
from sparknet.models.registry import model_of
from sparknet_testing.tabular import split, standardized

SPEC = InputSpec(shape=(30,), num_classes=1, label_width=1, binary_targets=True)


def _run(rounds: int, *, patience: int, monitor: str = "loss", test: bool = True
         ) -> TrainResult:
    x, y = standardized("breast_cancer")
    held_out = split(len(y))
    train_rows = np.flatnonzero(~held_out)[:40]  # few rows: it overfits within a few rounds
    targets = y.astype(np.float32)[:, None]
    config = TrainConfig(model="sparknet_testing.nets:mlp",
                         model_args='{"hidden": 32, "outputs": 1}', objective="binary", seed=1,
                         engine=EngineConfig(num_workers=2, tau=10, batch_size=8, rounds=rounds,
                                             eval_every=1, patience=patience, monitor=monitor),
                         optimizer=OptimizerConfig(lr=0.1))
    runner = InProcessRunner((x[train_rows], targets[train_rows]), num_workers=2, seed=1,
                             test=(x[held_out], targets[held_out]) if test else None)
    return run_rounds(runner, config=config, model=model_of(config), spec=SPEC,
                      options=LoopOptions())


def test_stops_after_patience_and_restores_the_best_round() -> None:
    result = _run(40, patience=3)
    losses = [r["test_loss"] for r in result.metrics]
    assert result.stopped_early and len(losses) < 40
    assert result.best_round == result.metrics[int(np.argmin(losses))]["round"]
    assert len(losses) == result.best_round + 3  # three evaluations without improvement
    # The weights are those of the best round: the same run stopped there by rounds.
    undisturbed = _run(result.best_round, patience=0)
    np.testing.assert_array_equal(result.floats, undisturbed.floats)
    assert not undisturbed.stopped_early and undisturbed.best_round is None


def test_monitoring_accuracy_keeps_the_most_accurate_round() -> None:
    result = _run(40, patience=3, monitor="accuracy")
    accuracies = [r["test_accuracy"] for r in result.metrics]
    assert result.best_round == result.metrics[int(np.argmax(accuracies))]["round"]


def test_early_stopping_needs_validation_data_and_evaluations() -> None:
    with pytest.raises(ConfigError, match=r"patience=2 needs validation data"):
        _run(5, patience=2, test=False)
    with pytest.raises(ConfigError, match=r"early stopping needs evaluations.*eval_every > 0"):
        EngineConfig(eval_every=0, patience=2)


def test_the_bookkeeping_counts_evaluations_not_rounds() -> None:
    stopper = EarlyStopping(patience=2, monitor="loss")
    weights = np.zeros(3, np.float32), np.zeros(0, np.int64)
    assert not stopper.observe({"round": 1, "test_loss": 1.0}, *weights)
    assert not stopper.observe({"round": 2, "test_loss": None}, *weights)  # not evaluated
    assert not stopper.observe({"round": 3, "test_loss": 1.5}, *weights)
    assert not stopper.observe({"round": 4, "test_loss": 0.5}, *weights)  # better: reset
    assert not stopper.observe({"round": 5, "test_loss": 0.6}, *weights)
    assert stopper.observe({"round": 6, "test_loss": 0.7}, *weights)
    assert stopper.best_round == 4 and stopper.best_value == 0.5
