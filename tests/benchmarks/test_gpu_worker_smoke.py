"""``benchmarks/gpu_worker.py --smoke`` runs on the CPU with PySpark unimportable (the GPU
host has neither Java nor PySpark) and writes its JSON and markdown report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_worker_smoke_runs_without_pyspark(tmp_path: Path) -> None:
    blocker = tmp_path / "no-spark" / "pyspark"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no PySpark on the GPU host')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(blocker.parent), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_worker.py"),
                           "--smoke", "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "out" / "gpu_worker.json").read_text())
    assert data["smoke"] is True
    assert {(r["net"], r["precision"], r["channels_last"]) for r in data["worker"]} == {
        (net, precision, channels_last) for net in ("alexnet", "googlenet", "resnet50")
        for precision, channels_last in (("fp32", False), ("bf16", False), ("bf16", True))}
    assert all(r["worker_images_per_s"] > 0 and r["plain_images_per_s"] > 0
               for r in data["worker"])
    assert data["cpu_vs_device"]["relative_difference_of_change"] == 0.0  # CPU vs CPU
    assert data["in_process"]["workers"] == 8 and data["in_process"]["samples_per_s"] > 0
    report = (tmp_path / "out" / "gpu_worker.md").read_text()
    assert "Smoke run" in report and "| resnet50 | 2 | bf16 | True |" in report
