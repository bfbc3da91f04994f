"""The defaults need no tuning and no quiet machine: tau = "epoch" is worked out from the row
count alone, so a default fit takes the same steps, and ends with the same weights, however
loaded the machine is; the work it does is stated before training starts."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from sparknet.config import EPOCH_TAU_CAP, EngineConfig, TrainConfig
from sparknet.engine.defaults import resolve_epoch_tau, work_statement
from sparknet.engine.loop import tau_policy
from sparknet.ml import SparkNetEstimator
from sparknet_testing.tabular import frame, standardized


def test_the_default_is_one_pass_per_round_with_a_nesterov_outer_step() -> None:
    config = TrainConfig()
    assert config.engine.tau == "epoch" and config.outer.name == "nesterov"
    assert config.optimizer.momentum_policy == "auto"
    assert (config.outer.lr, config.outer.momentum) == (0.7, 0.9)
    # One pass over the smallest shard, rounded up to whole batches; at most the cap.
    assert resolve_epoch_tau(config, [719, 718]).engine.tau == 12   # ceil(718 / 64)
    assert resolve_epoch_tau(config, [64, 64]).engine.tau == 1
    assert resolve_epoch_tau(config, [10**6, 10**6]).engine.tau == EPOCH_TAU_CAP
    fixed = TrainConfig(engine=EngineConfig(tau=7))
    assert resolve_epoch_tau(fixed, [10**6]) is fixed
    with pytest.raises(ValueError, match="unresolved"):
        tau_policy(config)


def test_the_work_is_stated_in_samples_and_epochs() -> None:
    config = resolve_epoch_tau(TrainConfig(), [718, 719])
    assert work_statement(config, 1437) == (
        "20 rounds of 2 workers x 12 steps x 64 rows = 30,720 samples (21.4 epochs of "
        "1,437 rows)")
    auto = TrainConfig(engine=EngineConfig(tau="auto"))
    assert "measured step times" in work_statement(auto, 1437)


@pytest.mark.spark
def test_a_default_fit_takes_the_same_steps_and_weights_on_a_loaded_machine(
        spark: Any, capfd: Any) -> None:
    x, y = standardized("iris")
    df = frame(spark, x, y)
    # Every Param at its default but the network, which iris needs.
    estimator = SparkNetEstimator(network="sparknet_testing.nets:mlp",
                                  networkArgs={"inputs": 4, "outputs": 3}, inputShape=[4],
                                  progress="log")
    quiet = estimator.fit(df)
    assert "20 rounds of 2 workers x 2 steps x 64 rows = 5,120 samples (34.1 epochs of " \
           "150 rows)" in capfd.readouterr().err
    assert estimator.last_result.tau_decisions == [2] * 20  # ceil(75 / 64)
    # "auto": SGD with momentum keeps one buffer, averaged across the workers.
    assert estimator.last_result.config.optimizer.momentum_policy == "average"

    # Two processes spinning on every core while the same fit runs again.
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = estimator.fit(df)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert estimator.last_result.tau_decisions == [2] * 20
    np.testing.assert_array_equal(quiet.saved_network.floats, loaded.saved_network.floats)
