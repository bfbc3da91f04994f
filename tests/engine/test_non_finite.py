"""A NaN loss on the cluster stops training with a clear error (or skips the update).

The data holds one image of NaNs; which rounds draw it is computed in this process from the
same pure functions the workers use (shard split and batch order), and the run must agree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sparknet import weights_dir
from sparknet.config import EngineConfig, OptimizerConfig, TrainConfig
from sparknet.data import fashion_mnist
from sparknet.engine.local_steps import batch_indices
from sparknet_testing.chaos import run_driver
from sparknet_testing.standalone import StandaloneCluster

pytestmark = pytest.mark.cluster

SEED, K, TAU, BATCH, ROUNDS, EXAMPLES = 5, 2, 10, 32, 8, 2000


def config(on_non_finite: str) -> TrainConfig:
    return TrainConfig(model="sparknet_testing.faults:tiny_net", seed=SEED, checkpoint_every=1,
                       engine=EngineConfig(num_workers=K, tau=TAU, batch_size=BATCH,
                                           rounds=ROUNDS, eval_every=0,
                                           on_non_finite=on_non_finite),  # type: ignore[arg-type]
                       optimizer=OptimizerConfig(lr=0.05))


@pytest.fixture(scope="module")
def poisoned(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[int]]:
    """Training arrays with one all-NaN image, and the rounds whose batches draw it."""
    train = fashion_mnist.load_split("train", fashion_dir)
    x = train.images[:EXAMPLES].astype(np.float32)
    y = train.labels[:EXAMPLES]
    # The shard split of sparknet.data.shards.split_into_shards, done here by hand.
    shards = np.array_split(np.random.default_rng(SEED).permutation(EXAMPLES), K)
    partition, round_index = 0, 3
    position = batch_indices(num_examples=len(shards[partition]), batch_size=BATCH, steps=TAU,
                             step_offset=round_index * TAU, seed=SEED, partition=partition)[0, 0]
    x[shards[partition][position]] = np.nan
    rounds = {r for r in range(ROUNDS)
              if position in batch_indices(num_examples=len(shards[partition]), batch_size=BATCH,
                                           steps=TAU, step_offset=r * TAU, seed=SEED,
                                           partition=partition)}
    path = tmp_path_factory.mktemp("poisoned") / "data.npz"
    np.savez(path, train_x=x, train_y=y)
    return path, rounds


def drive(cluster: StandaloneCluster, data: Path, mode: str, run_dir: Path) -> tuple[int, str]:
    config_path = run_dir.with_suffix(".json")
    config_path.write_text(json.dumps(config(mode).to_dict()))
    import sys

    command = [sys.executable, "-m", "sparknet_testing.drive", "--master", cluster.master_url,
               "--data", str(data), "--config", str(config_path), "--run-dir", str(run_dir)]
    return run_driver(command, log=run_dir.with_suffix(".log"), timeout=300)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
        cluster: StandaloneCluster, poisoned: tuple[Path, set[int]], tmp_path: Path) -> None:
    data, bad_rounds = poisoned
    first_bad = min(bad_rounds)
    code, output = drive(cluster, data, "stop", tmp_path / "run")

    assert code == 2, output[-3000:]
    error = [line for line in output.splitlines() if line.startswith("sparknet: error:")]
    assert len(error) == 1 and re.search(
        rf"round {first_bad}: the training loss or update became NaN/infinite.*"
        r"The last good checkpoint is kept", error[0]), output[-3000:]
    kept = weights_dir.latest_checkpoint(tmp_path / "run")
    assert kept is not None and kept.name == f"round-{first_bad:06d}"
    snapshot = weights_dir.read(kept)
    assert all(np.isfinite(t).all() for t in snapshot.tensors.values())
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.slow
def test_nan_loss_skips_exactly_the_poisoned_rounds(
        cluster: StandaloneCluster, poisoned: tuple[Path, set[int]], tmp_path: Path) -> None:
    data, bad_rounds = poisoned
    code, output = drive(cluster, data, "skip", tmp_path / "run")

    assert code == 0, output[-3000:]
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = {r["round"] - 1 for r in records if not r["update_applied"]}
    assert skipped == bad_rounds
    final = weights_dir.read(tmp_path / "run" / "final")
    assert all(np.isfinite(t).all() for t in final.tensors.values())
