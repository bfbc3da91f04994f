"""A real Spark standalone cluster (master + 2 one-core workers, separate JVMs) on 127.0.0.1.

Started once for all ``cluster`` tests, stopped at the end of the session, and every process
it started is killed even when a test fails. Fault files are cleared around each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from sparknet_testing.chaos import clear_faults, run_driver, train_command
from sparknet_testing.data import write_fashion_subset
from sparknet_testing.standalone import StandaloneCluster, start_cluster

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    started = start_cluster(tmp_path_factory.mktemp("standalone"), num_workers=2,
                            cores_per_worker=1)
    try:
        yield started
    finally:
        started.stop()
    assert not started.descendants(), "the cluster left processes behind"


@pytest.fixture
def faults(cluster: StandaloneCluster) -> Iterator[Path]:
    """The executors' fault folder, empty before and after the test."""
    clear_faults(cluster.fault_dir)
    yield cluster.fault_dir
    clear_faults(cluster.fault_dir)


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 4,000 training and 1,000 test images of Fashion-MNIST as IDX files, so each
    driver reads a small folder instead of decompressing all 70,000 images."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR}: run scripts/bootstrap.sh")
    return write_fashion_subset(tmp_path_factory.mktemp("fashion-subset"), train=4000,
                                test=1000, source=FASHION_DIR)


@dataclass(frozen=True)
class SmallRun:
    """The run the fault tests share: a 784-32-10 MLP on 4,000 Fashion-MNIST images, K=2,
    tau=10, 8 rounds, a checkpoint every 2 rounds, as ``sparknet train`` driver processes."""

    cluster: StandaloneCluster
    fashion_dir: Path
    tau: int = 10
    rounds: int = 8
    model: str = "sparknet_testing.faults:tripwire_net"

    def command(self, run_dir: Path, *extra: str, model: str | None = None) -> list[str]:
        return train_command(
            self.cluster.master_url, "--model", model or self.model, "--num-workers", "2",
            "--tau", str(self.tau), "--batch-size", "32", "--rounds", str(self.rounds),
            "--lr", "0.05", "--eval-every", "0", "--checkpoint-every", "2", "--seed", "3",
            "--train-limit", "4000", "--test-limit", "1000", "--data-dir",
            str(self.fashion_dir), "--output", str(run_dir), *extra)

    def train(self, run_dir: Path, *extra: str) -> str:
        code, output = run_driver(self.command(run_dir, *extra),
                                  log=run_dir.with_suffix(".log"), timeout=300)
        assert code == 0, output[-3000:]
        return output


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.fixture(scope="session")
def small_run(cluster: StandaloneCluster, fashion_dir: Path) -> SmallRun:
    return SmallRun(cluster, fashion_dir)


@pytest.fixture(scope="session")
def reference(small_run: SmallRun,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Final weights of an undisturbed small run on the cluster (no fault armed)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    small_run.train(run_dir)
    return final_weights(run_dir)


@pytest.fixture(scope="session")
def assert_matches_reference(reference: dict[str, np.ndarray]) -> object:
    """``check(run_dir)``: the run's final weights equal the reference's, bit for bit."""

    def check(run_dir: Path) -> None:
        got = final_weights(run_dir)
        assert sorted(got) == sorted(reference)
        for name, want in reference.items():
            assert np.array_equal(got[name], want), f"{name} differs from the reference run"

    return check
