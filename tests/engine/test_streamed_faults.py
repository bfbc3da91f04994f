"""A streamed source on the standalone cluster: a worker or executor killed mid-round.

The runs are ``sparknet train --images`` driver processes over a JPEG folder, so each shard
is a file on an executor. A killed Python worker's retry finds the file where it was; a
killed executor takes its files and cached markers with it, so Spark recomputes the lost
partition from the DataFrame's lineage and the retry writes the file again elsewhere. Either
way the final weights equal an undisturbed run's, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparknet_testing.chaos import Killer, arm_tripwire, run_driver, train_command
from sparknet_testing.standalone import EXECUTOR_MAIN, StandaloneCluster

pytestmark = pytest.mark.cluster

TAU = 10


@pytest.fixture(scope="module")
def jpeg_dir(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> Path:
    from sparknet_testing.data import write_image_folder

    root = tmp_path_factory.mktemp("streamed-jpegs")
    write_image_folder(root / "train", split="train", count=2000, source=fashion_dir)
    write_image_folder(root / "val", split="test", count=400, source=fashion_dir)
    return root


def _train(cluster: StandaloneCluster, jpeg_dir: Path, run_dir: Path) -> str:
    command = train_command(
        cluster.master_url, "--images", str(jpeg_dir / "train"), "--val-images",
        str(jpeg_dir / "val"), "--model", "sparknet_testing.faults:tripwire_net",
        "--num-workers", "2", "--tau", str(TAU), "--batch-size", "32", "--rounds", "6",
        "--lr", "0.05", "--eval-every", "3", "--checkpoint-every", "2", "--seed", "3",
        "--output", str(run_dir))
    code, output = run_driver(command, log=run_dir.with_suffix(".log"), timeout=300)
    assert code == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def streamed_reference(cluster: StandaloneCluster, jpeg_dir: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    run_dir = tmp_path_factory.mktemp("streamed-reference") / "run"
    _train(cluster, jpeg_dir, run_dir)
    return load_file(str(run_dir / "final" / "model.safetensors"))


# Both cases run in the slow tier (a 2,000-image folder and a reference run: ~90 s).
@pytest.mark.slow
@pytest.mark.parametrize("target", ["python", "executor"])
def test_kill_mid_round_with_a_streamed_source_gives_identical_weights(
        target: str, cluster: StandaloneCluster, jpeg_dir: Path, faults: Path,
        streamed_reference: dict[str, np.ndarray], tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    # Each task runs TAU forward passes: the kill lands at step 3 of a task in round 3.
    arm_tripwire(faults, after_forwards=2 * TAU + 3)
    killer = Killer(faults, target).start()  # type: ignore[arg-type]

    output = _train(cluster, jpeg_dir, tmp_path / "run")

    killer.join()
    assert killer.killed, "the tripwire never fired: nothing was killed"
    process = "sparknet.engine.quiet_daemon" if target == "python" else EXECUTOR_MAIN
    assert process in killer.killed[0]
    assert "2,000 files in 2 streamed shards" in output
    got = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert sorted(got) == sorted(streamed_reference)
    for name, want in streamed_reference.items():
        assert np.array_equal(got[name], want), f"{name} differs from the undisturbed run"
