"""The simulator runs the engine's own functions: its weights equal a real local[2] run's."""

import numpy as np
import pytest

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.data.sources import from_arrays
from sparknet.engine.trainer import train
from sparknet.simulate import simulate

pytestmark = pytest.mark.spark
SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


@pytest.mark.parametrize(("workers", "fan_in", "outer", "compression", "policy"), [
    (2, 4, "nesterov", "none", "reset"),
    (3, 2, "weighted", "int8", "average"),  # K > fan-in: the executors' tree sum
])
def test_simulated_weights_equal_the_spark_run(spark, fashion, workers, fan_in, outer,
                                               compression, policy):
    train_set = (fashion["train"].images[:1500], fashion["train"].labels[:1500])
    test_set = (fashion["test"].images[:400], fashion["test"].labels[:400])
    config = TrainConfig(
        model="lenet", seed=5,
        engine=EngineConfig(num_workers=workers, tau=5, batch_size=16, rounds=2, eval_every=1,
                            tree_fan_in=fan_in),
        optimizer=OptimizerConfig(lr=0.02, momentum=0.9, momentum_policy=policy),
        outer=OuterConfig(name=outer, compression=compression))
    data = from_arrays(spark.sparkContext, train=train_set, test=test_set, spec=SPEC,
                       num_workers=workers, seed=config.seed)
    try:
        real = train(data, config=config, progress=False)
    finally:
        data.release()
    simulated = simulate(train_set, config=config, spec=SPEC, test=test_set)

    np.testing.assert_array_equal(simulated.floats, real.floats)
    np.testing.assert_array_equal(simulated.ints, real.ints)
    for sim, spark_record in zip(simulated.records, real.metrics, strict=True):
        assert sim["samples"] == spark_record["samples"]
        assert sim["bytes_per_worker"] == spark_record["bytes_per_worker"]
        assert sim["test_accuracy"] == spark_record["test_accuracy"]
        assert sim["train_loss"] == pytest.approx(spark_record["train_loss"], rel=1e-12)
