"""Spark's GPU scheduling end to end on a real standalone cluster whose worker reports two
fake GPUs (addresses 3 and 7) through a discovery script: each task sees the address Spark
assigned it and picks ``cuda:ADDRESS``; without CUDA, ``auto`` trains on the CPU and ``cuda``
stops in one line naming the address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparknet_testing.chaos import run_driver, train_command
from sparknet_testing.standalone import StandaloneCluster, start_cluster

ADDRESSES = ["3", "7"]
GPU_CONF = {"spark.executor.resource.gpu.amount": "2", "spark.task.resource.gpu.amount": "1",
            "spark.executor.cores": "2"}

PROBE = '''
import json, sys
from sparknet.engine.spark_session import get_or_create_session

def probe(_):
    from pyspark import BarrierTaskContext
    from sparknet.engine.tasks import assigned_gpu, pick_device, task_device
    context = BarrierTaskContext.get()
    context.barrier()  # both tasks hold their GPU at the same time
    address = assigned_gpu()
    try:
        task_device("cuda")
        error = None
    except Exception as exc:
        error = str(exc)
    yield {"addresses": list(context.resources()["gpu"].addresses), "assigned": address,
           "picked": str(pick_device("cuda", assigned=address, cuda_devices=8)),
           "auto": str(task_device("auto")), "cuda_error": error}

spark = get_or_create_session(sys.argv[1], extra_conf=json.loads(sys.argv[2]))
rows = spark.sparkContext.parallelize(range(2), 2).barrier().mapPartitions(probe).collect()
print("ROWS " + json.dumps(rows))
spark.stop()
'''


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    root = tmp_path_factory.mktemp("gpu-cluster")
    script = root / "discover_gpus.sh"
    script.write_text("#!/bin/sh\n"
                      f"echo '{json.dumps({'name': 'gpu', 'addresses': ADDRESSES})}'\n")
    script.chmod(0o755)
    started = start_cluster(root, num_workers=1, cores_per_worker=2, daemon_opts=(
        f"-Dspark.worker.resource.gpu.amount={len(ADDRESSES)} "
        f"-Dspark.worker.resource.gpu.discoveryScript={script}"))
    try:
        yield started
    finally:
        started.stop()
    assert not started.descendants(), "the cluster left processes behind"


@pytest.mark.cluster
@pytest.mark.slow  # a cluster of its own (a fake GPU script): 40-50 s
def test_each_task_picks_the_gpu_spark_assigned_it(gpu_cluster: StandaloneCluster) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, gpu_cluster.master_url,
                           json.dumps(GPU_CONF)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("ROWS "))
    rows = json.loads(line.removeprefix("ROWS "))
    assert sorted(r["assigned"] for r in rows) == ADDRESSES  # one GPU each, at the same time
    for row in rows:
        assert row["addresses"] == [row["assigned"]]
        assert row["picked"] == f"cuda:{row['assigned']}"
        assert row["auto"] == "cpu"  # no CUDA on this machine: the CPU, by the rule
        assert row["cuda_error"] == (
            "device 'cuda' was asked for but this executor has no CUDA device (Spark "
            f"assigned it GPU '{row['assigned']}'): use --device auto or cpu, or give "
            "executors GPUs and a CUDA build of PyTorch")


def _submit_args() -> dict[str, str]:
    conf = " ".join(f"--conf {key}={value}" for key, value in GPU_CONF.items())
    return {"PYSPARK_SUBMIT_ARGS": f"{conf} pyspark-shell"}


@pytest.mark.cluster
@pytest.mark.slow
def test_training_on_gpu_scheduled_executors(gpu_cluster: StandaloneCluster,
                                             tmp_path: Path) -> None:
    """``sparknet train`` with GPUs scheduled: auto trains (on the CPU here); cuda is refused
    by the executor in one line naming the address Spark gave it."""
    args = ("--model", "lenet", "--num-workers", "2", "--tau", "2", "--batch-size", "16",
            "--rounds", "1", "--eval-every", "0", "--train-limit", "64", "--test-limit", "64")
    code, output = run_driver(train_command(gpu_cluster.master_url, *args, "--device", "auto",
                                            "--output", str(tmp_path / "auto")),
                              log=tmp_path / "auto.log", env=_submit_args())
    assert code == 0, output[-3000:]
    assert (tmp_path / "auto" / "final" / "model.safetensors").is_file()
    code, output = run_driver(train_command(gpu_cluster.master_url, *args, "--device", "cuda",
                                            "--output", str(tmp_path / "cuda")),
                              log=tmp_path / "cuda.log", env=_submit_args())
    assert code != 0
    assert "device 'cuda' was asked for but this executor has no CUDA device (Spark " \
           "assigned it GPU '" in output
