"""500 rounds on the cluster: memory stays flat and no files pile up (slow: ~5-10 minutes).

``benchmarks/long_run.py`` runs the same measurement and writes the figures to
benchmarks/results/long_run.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparknet_testing.resources import long_run
from sparknet_testing.standalone import StandaloneCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ARGS = ("--model", "sparknet_testing.faults:tiny_net", "--num-workers", "2", "--tau", "5",
        "--batch-size", "32", "--lr", "0.05", "--eval-every", "0", "--checkpoint-every", "50",
        "--seed", "0")


def test_500_rounds_keep_memory_and_disk_flat(cluster: StandaloneCluster, fashion_dir: Path,
                                              tmp_path: Path) -> None:
    report = long_run(cluster, tmp_path / "run", rounds=500, at=(50, 500),
                      train_args=(*ARGS, "--data-dir", str(fashion_dir)))

    assert report["exit_code"] == 0, report["output_tail"]
    early, late = report["samples"]
    assert (early["round"], late["round"]) >= (50, 500)
    for who in ("driver", "executor", "python"):
        # 450 more rounds of ~100 kB broadcasts would be ~45 MB each if nothing were freed.
        assert late[f"{who}_peak_mib"] <= early[f"{who}_peak_mib"] * 1.1 + 32, (who, report)
    # At any moment the executors hold the 2 data shards plus this round's (and at most the
    # previous round's) state broadcast: a handful of files, whatever the round.
    assert late["local_files"] <= early["local_files"] + 4, report
    assert late["driver_files"] <= early["driver_files"] + 4, report
    assert late["work_files"] == early["work_files"], report
