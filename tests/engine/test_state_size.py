"""A network state the driver or an executor cannot hold is refused before any job.

The campaign's 1 GiB state killed the driver JVM (``OutOfMemoryError: Java heap space``,
then a misleading "failed in all 4 attempts"); 2 GiB took 17 GB of memory in 80 s.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sparknet.engine.spark_runner import MemoryLimits, check_state_size
from sparknet.errors import ConfigError

GIB = 2**30


@pytest.mark.parametrize(("state", "limits", "expected"), [
    (GIB, MemoryLimits(max_result=0, driver_heap=4 * GIB, executor_memory=0),
     "a round needs about 6.0 GiB of the driver's heap (6 copies), which has 4.0 GiB: raise "
     "spark.driver.memory"),
    (300 * 2**20, MemoryLimits(max_result=GIB, driver_heap=16 * GIB, executor_memory=0),
     "the driver receives 4 results of that size a round (1.2 GiB), above "
     "spark.driver.maxResultSize (1.0 GiB)"),
    (400 * 2**20, MemoryLimits(max_result=0, driver_heap=16 * GIB, executor_memory=GIB),
     "more than 60% of spark.executor.memory (1.0 GiB)"),
])
def test_a_state_too_large_is_one_line(state: int, limits: MemoryLimits,
                                       expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_state_size(state, results=4, limits=limits)


def test_a_state_that_fits_passes() -> None:
    check_state_size(100 * 2**20, results=4,
                     limits=MemoryLimits(max_result=GIB, driver_heap=4 * GIB,
                                         executor_memory=GIB))


@pytest.mark.spark
def test_the_limits_are_read_from_the_running_session(spark) -> None:
    limits = MemoryLimits.of(spark.sparkContext)
    assert limits.max_result == GIB  # Spark's default
    assert 2 * GIB < limits.driver_heap <= 4 * GIB  # sparknet's sessions ask for 4g
    assert limits.executor_memory == 0  # local mode: the executors are the driver


@pytest.mark.slow
def test_training_is_refused_before_any_job() -> None:
    """A real session whose spark.driver.maxResultSize is below two LeNet results."""
    child = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import numpy as np
        from sparknet.config import TrainConfig
        from sparknet.data.shards import InputSpec
        from sparknet.data.sources import from_arrays
        from sparknet.engine.spark_session import get_or_create_session
        from sparknet.engine.trainer import train
        from sparknet.errors import ConfigError

        spark = get_or_create_session("local[2]", extra_conf={
            "spark.driver.maxResultSize": "150k"})
        rng = np.random.default_rng(0)
        data = from_arrays(spark, train=(rng.integers(0, 255, (256, 1, 28, 28), np.uint8),
                                         rng.integers(0, 10, 256)), test=None,
                           spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
                           num_workers=2, seed=0)
        tracker = spark.sparkContext.statusTracker()
        jobs = tracker.getJobIdsForGroup()
        config = TrainConfig.from_dict({"engine": {"tau": 2, "batch_size": 16, "rounds": 1}})
        try:
            train(data, config=config, progress=False)
        except ConfigError as exc:
            print("refused:", exc)
        print("jobs:", tracker.getJobIdsForGroup() == jobs)
        spark.stop()
    """)], capture_output=True, text=True, timeout=240)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "refused: the network's state is " in child.stdout, child.stdout
    assert "the driver receives 2 results of that size a round" in child.stdout
    assert "above spark.driver.maxResultSize (150.0 KiB)" in child.stdout
    assert "jobs: True" in child.stdout
