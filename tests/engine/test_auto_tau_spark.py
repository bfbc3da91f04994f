"""Automatic tau on local[2]: decisions are recorded, and replaying them repeats the run."""

import json

import numpy as np
import pytest

from sparknet.config import EngineConfig, OptimizerConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.data.sources import from_arrays
from sparknet.engine.auto_tau import AutoTau
from sparknet.engine.trainer import train

pytestmark = pytest.mark.spark
SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


def test_auto_tau_is_recorded_and_a_replayed_run_is_bit_identical(spark, fashion, tmp_path):
    train_set = (fashion["train"].images[:2000], fashion["train"].labels[:2000])
    probes = AutoTau().probe_rounds
    config = TrainConfig(model="lenet", seed=2,
                         engine=EngineConfig(num_workers=2, tau="auto", batch_size=8,
                                             rounds=probes + 1, eval_every=0),
                         optimizer=OptimizerConfig(lr=0.01))
    assert config.engine.tau == "auto"
    data = from_arrays(spark.sparkContext, train=train_set, test=None, spec=SPEC,
                       num_workers=2, seed=config.seed)
    try:
        first = train(data, config=config, run_dir=tmp_path / "first", progress=False)
        decisions = json.loads((tmp_path / "first/final/state.json").read_text())["tau_decisions"]
        assert decisions[:probes] == [AutoTau().probe_tau] * probes
        assert len(decisions) == probes + 1 and decisions[-1] >= 1
        # The measured choice keeps the measured overhead within 5% of a round.
        last = first.metrics[-1]
        step = last["compute_seconds"] / last["tau"]
        overhead = np.median([r["overhead_seconds"] for r in first.metrics[1:probes]])
        assert decisions[-1] == AutoTau().max_tau or overhead / (
            decisions[-1] * step + overhead) < 0.2  # timing noise on a shared machine
        again = train(data, config=config, run_dir=tmp_path / "again", progress=False,
                      tau_decisions=decisions)
    finally:
        data.release()
    assert [r["tau"] for r in again.metrics] == decisions
    np.testing.assert_array_equal(again.floats, first.floats)


def test_stop_ends_training_after_the_round_it_names(spark, fashion):
    train_set = (fashion["train"].images[:600], fashion["train"].labels[:600])
    config = TrainConfig(model="lenet", seed=0,
                         engine=EngineConfig(num_workers=2, tau=2, batch_size=8, rounds=10,
                                             eval_every=0))
    data = from_arrays(spark.sparkContext, train=train_set, test=None, spec=SPEC,
                       num_workers=2, seed=0)
    try:
        result = train(data, config=config, progress=False, stop=lambda r: r["round"] == 3)
    finally:
        data.release()
    assert [r["round"] for r in result.metrics] == [1, 2, 3]
