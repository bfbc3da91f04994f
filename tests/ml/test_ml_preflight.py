"""Before the first job, fit checks that the executors' Python imports sparknet: a plain
SparkSession whose workers run a Python without sparknet (a venv that was not activated) is
one line naming spark.pyspark.python / PYSPARK_PYTHON, in a fresh process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark

SRC = str(Path(__file__).resolve().parents[2] / "src")

FIT = """
import sys
sys.path.insert(0, sys.argv[1])
from pyspark.sql import SparkSession
from sparknet.errors import ConfigError
from sparknet.ml import SparkNetEstimator
spark = (SparkSession.builder.master("local[1]").appName("preflight")
         .config("spark.pyspark.python", sys.argv[2]).getOrCreate())
df = spark.createDataFrame([([0.0, 1.0, 2.0, 3.0], 0.0)] * 8,
                           "features array<double>, label double")
try:
    SparkNetEstimator(network="sparknet_testing.nets:mlp", networkArgs={"inputs": 4},
                      inputShape=[4], numWorkers=1,
                      batchSize=2, rounds=1, progress="off").fit(df)
except ConfigError as exc:
    print("REFUSED", exc)
"""


def test_executors_without_sparknet_are_one_line(tmp_path: Path) -> None:
    system = shutil.which("python3", path="/usr/bin")
    if system is None or Path(system).resolve() == Path(sys.executable).resolve():
        pytest.skip("needs a system python3 beside this environment's")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON")}
    done = subprocess.run([sys.executable, "-c", FIT, SRC, system], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    refused = [line for line in done.stdout.splitlines() if line.startswith("REFUSED")]
    assert refused, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.fullmatch(r"REFUSED the executors' Python \(\S+\) cannot import sparknet: set "
                        r"spark\.pyspark\.python \(or PYSPARK_PYTHON\) to a Python that has "
                        r"sparknet installed, e\.g\. \S+", refused[0]), refused[0]
