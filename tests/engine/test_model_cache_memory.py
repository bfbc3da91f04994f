"""Train() calls with ever new networks in one session keep the workers' memory flat.

Ten calls fill every worker's cache; ten more, each with a network not seen before, must not
grow a worker by more than allocator slack (without eviction each would add 13 MB).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import psutil
import pytest
from torch import nn

from sparknet.config import EngineConfig, OptimizerConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.data.sources import from_arrays
from sparknet.engine.model_cache import CAPACITY
from sparknet.engine.trainer import train

pytestmark = pytest.mark.spark
WIDTH = 4096  # 784 * 4096 floats: 13 MB a network, so ten kept would show


def wide_mlp(width: int, tag: int) -> nn.Module:
    del tag  # only makes each factory a different network to the cache
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))


def _probe(_: Any) -> Any:
    import ctypes
    import gc

    from sparknet.engine.model_cache import NETWORKS

    # Hand freed heap pages back to the OS, so RSS counts live memory, not allocator slack.
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    yield os.getpid(), psutil.Process().memory_info().rss, len(NETWORKS.keys())


def _workers(spark: Any) -> dict[int, tuple[int, int]]:
    found = spark.sparkContext.parallelize(range(4), 4).mapPartitions(_probe).collect()
    return {pid: (rss, count) for pid, rss, count in found}


@pytest.mark.slow
def test_ten_networks_keep_worker_memory_flat(spark: Any, fashion: Any) -> None:
    split = fashion["train"]
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    data = from_arrays(spark.sparkContext, train=(split.images[:512], split.labels[:512]),
                       test=None, spec=spec, num_workers=2, seed=0)
    config = TrainConfig(model="unused", engine=EngineConfig(num_workers=2, tau=2, batch_size=16,
                                                             rounds=1, eval_every=0),
                         optimizer=OptimizerConfig(lr=0.01), checkpoint_every=0)
    probes = []
    try:
        for tag in range(20):
            train(data, config=config, model=functools.partial(wide_mlp, WIDTH, tag),
                  progress=False)
            if tag in (9, 19):
                probes.append(_workers(spark))
    finally:
        data.release()
    net_bytes = (784 * WIDTH + WIDTH * 10) * 4
    before, after = probes
    assert all(count <= CAPACITY for _, count in after.values())
    common = set(before) & set(after)
    assert common, "Spark reused no Python worker between the probes"
    growth = {pid: after[pid][0] - before[pid][0] for pid in common}
    print({pid: f"{g / 2**20:.1f} MiB" for pid, g in growth.items()})
    # A worker holds at most CAPACITY networks (13 MB each, no gradients kept); keeping the ten
    # new ones would add about 130 MB to a worker that built them.
    assert max(growth.values()) < 3 * net_bytes, growth
