"""The DataFrame runner (Spark Connect's) against the classic runner, bit for bit.

In-process on the classic session (the runner uses DataFrame APIs only), and through a real
Spark Connect server with a client in a child process: ``sparknet.train``, checkpoints and
resume, and ``sparknet train --remote``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from sparknet.data.chunks import layout_of_arrays
from sparknet.data.placement import SparkData
from sparknet.data.placements.frames import FramePlacement
from sparknet.data.shards import InputSpec, contiguous_shards, split_into_shards
from sparknet.data.sources import from_arrays
from sparknet.engine.frame_runner import INLINE_LIMIT_BYTES, FrameRunner
from sparknet.engine.run_dir import load_result
from sparknet.engine.trainer import train
from sparknet.engine.transport import Transport
from sparknet.errors import ConfigError
from sparknet.models import LeNet
from sparknet.models.registry import resolve_model
from sparknet_testing.connect_client import TRAIN_CONFIGS, run_client, run_task

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _frame_data(spark: Any, fashion: Any, workers: int, seed: int) -> SparkData:
    train_set = (fashion["train"].images[:1200], fashion["train"].labels[:1200])
    test_set = (fashion["test"].images[:300], fashion["test"].labels[:300])
    shards = split_into_shards(*train_set, workers, seed=seed)
    frames, layout = FramePlacement(), layout_of_arrays(*train_set)
    return SparkData(train=frames.place_shards(spark, shards, layout),
                     test=frames.place_shards(spark, contiguous_shards(*test_set, workers),
                                              layout), spec=SPEC,
                     train_sizes=tuple(len(s) for s in shards), test_size=300)


@pytest.mark.spark
@pytest.mark.parametrize("name", sorted(TRAIN_CONFIGS))
def test_frame_runner_equals_the_classic_runner(spark: Any, fashion: Any, name: str) -> None:
    config = TRAIN_CONFIGS[name]
    workers = config.engine.num_workers
    frames = _frame_data(spark, fashion, workers, config.seed)
    classic = from_arrays(spark.sparkContext,
                          train=(fashion["train"].images[:1200], fashion["train"].labels[:1200]),
                          test=(fashion["test"].images[:300], fashion["test"].labels[:300]),
                          spec=SPEC, num_workers=workers, seed=config.seed)
    try:
        by_frames = train(frames, config=config, progress=False)
        by_rdds = train(classic, config=config, progress=False)
    finally:
        frames.release()
        classic.release()
    np.testing.assert_array_equal(by_frames.floats, by_rdds.floats)
    assert [r["test_loss"] for r in by_frames.metrics] == [r["test_loss"] for r in by_rdds.metrics]


@pytest.mark.spark
@pytest.mark.parametrize("name", sorted(TRAIN_CONFIGS))
def test_state_and_result_files_carry_the_same_values(spark: Any, fashion: Any, tmp_path: Path,
                                                      name: str) -> None:
    config = TRAIN_CONFIGS[name]
    frames = _frame_data(spark, fashion, config.engine.num_workers, config.seed)
    try:
        inline = train(frames, config=config, progress=False)
        by_file = train(frames, config=config, progress=False, state_dir=tmp_path / "state")
    finally:
        frames.release()
    np.testing.assert_array_equal(inline.floats, by_file.floats)
    assert not list((tmp_path / "state").iterdir())  # state and result files removed


def test_a_state_too_large_for_the_plan_is_refused_before_any_job(spark: Any) -> None:
    runner = FrameRunner.__new__(FrameRunner)
    runner._transport = Transport()  # inside the plan: no state directory
    with pytest.raises(ConfigError, match=r"above the 96 MiB .* --state-dir"):
        runner.start(resolve_model("lenet"), state_bytes=INLINE_LIMIT_BYTES + 1)


@pytest.mark.connect
@pytest.mark.slow
def test_train_through_spark_connect_equals_classic(spark: Any, connect_server: Any,
                                                    tmp_path: Path) -> None:
    run_client("train", connect_server.url, tmp_path / "connect")
    run_task("train", spark, tmp_path / "classic")
    remote = np.load(tmp_path / "connect" / "train.npz")
    local = np.load(tmp_path / "classic" / "train.npz")
    assert sorted(remote.files) == sorted(local.files) == ["k2", "k2_resumed", "k3",
                                                           "k3_resumed"]
    for name in remote.files:
        np.testing.assert_array_equal(remote[name], local[name], err_msg=name)
    np.testing.assert_array_equal(remote["k2_resumed"], remote["k2"])
    assert (tmp_path / "connect" / "train.json").read_text() == (
        tmp_path / "classic" / "train.json").read_text()


@pytest.mark.connect
def test_cli_remote_trains_like_a_classic_master(spark: Any, connect_server: Any,
                                                 tmp_path: Path) -> None:
    import subprocess
    import sys

    from sparknet.cli.main import main

    common = ["--num-workers", "2", "--tau", "5", "--rounds", "2", "--train-limit", "1000",
              "--test-limit", "200", "--data-dir", str(FASHION_DIR), "--no-progress",
              "--outer", "nesterov"]
    done = subprocess.run([sys.executable, "-m", "sparknet.cli.main", "train", "--remote",
                           connect_server.url, "--output", str(tmp_path / "remote"), *common],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["train", "--output", str(tmp_path / "classic"), *common]) == 0
    np.testing.assert_array_equal(load_result(tmp_path / "remote").floats,
                                  load_result(tmp_path / "classic").floats)


def test_remote_urls_are_checked_before_anything_starts(capsys: Any) -> None:
    from sparknet.cli.main import main

    assert main(["train", "--remote", "http://host:15002"]) == 2
    assert "is not a Spark Connect URL" in capsys.readouterr().err
    assert main(["train", "--remote", "sc://127.0.0.1:1"]) == 2
    assert "cannot reach the Spark Connect server" in capsys.readouterr().err
    assert main(["train", "--remote", "sc://127.0.0.1:1", "--master", "local[2]"]) == 2
    assert "drop one" in capsys.readouterr().err


class _FirstAttemptFails(nn.Module):
    """LeNet whose forward fails in the first attempt of partition 1's task, every round."""

    def __init__(self) -> None:
        super().__init__()
        self.net = LeNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is not None and context.partitionId() == 1 and context.attemptNumber() == 0:
            raise RuntimeError("injected failure on the first attempt")
        return self.net(x)


@pytest.mark.spark
def test_a_task_retried_by_spark_gives_identical_weights(spark: Any, fashion: Any) -> None:
    config = TRAIN_CONFIGS["k2"]
    frames = _frame_data(spark, fashion, 2, config.seed)
    try:
        undisturbed = train(frames, config=config, progress=False)
        retried = train(frames, config=config, model=_FirstAttemptFails, progress=False)
    finally:
        frames.release()
    np.testing.assert_array_equal(undisturbed.floats, retried.floats)
