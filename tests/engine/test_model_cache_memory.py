"""Ten train() calls with ten different networks in one session keep the workers flat."""

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
    from sparknet.engine.model_cache import NETWORKS

    yield os.getpid(), psutil.Process().memory_info().rss, len(NETWORKS.keys())


def _workers(spark: Any) -> dict[int, tuple[int, int]]:
    found = spark.sparkContext.parallelize(range(4), 4).mapPartitions(_probe).collect()
    return {pid: (rss, count) for pid, rss, count in found}


def test_ten_networks_keep_worker_memory_flat(spark: Any, fashion: Any) -> None:
    split = fashion["train"]
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    data = from_arrays(spark.sparkContext, train=(split.images[:512], split.labels[:512]),
                       test=None, spec=spec, num_workers=2, seed=0)
    config = TrainConfig(model="unused", engine=EngineConfig(num_workers=2, tau=2, batch_size=16,
                                                             rounds=1, eval_every=0),
                         optimizer=OptimizerConfig(lr=0.01), checkpoint_every=0)
    seen: list[dict[int, tuple[int, int]]] = []
    try:
        for tag in range(10):
            train(data, config=config, model=functools.partial(wide_mlp, WIDTH, tag),
                  progress=False)
            if tag in (4, 9):
                seen.append(_workers(spark))
    finally:
        data.release()
    net_bytes = (784 * WIDTH + WIDTH * 10) * 4
    after_five, after_ten = seen
    assert all(count <= CAPACITY for _, count in after_ten.values())
    common = set(after_five) & set(after_ten)
    assert common, "Spark reused no Python worker between the probes"
    growth = {pid: after_ten[pid][0] - after_five[pid][0] for pid in common}
    print({pid: f"{g / 2**20:.1f} MiB" for pid, g in growth.items()})
    # Five more networks without eviction would add 5 x 13 MB to a worker that trained them.
    assert max(growth.values()) < 1.5 * net_bytes, growth
