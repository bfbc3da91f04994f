"""Memory and disk of a training run on the standalone cluster, sampled while it runs.

``long_run`` starts ``sparknet train`` as a driver process and, each time ``metrics.jsonl``
reaches a checkpoint round, records the resident memory (current and peak, VmHWM) of the
driver (Python + JVM), of the executor JVMs and of their Python workers, and the number of
files and bytes under the workers' Spark local directories and work directories and under the
driver's Spark local directory.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from sparknet_testing.chaos import Driver, train_command
from sparknet_testing.standalone import StandaloneCluster

MiB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    round: int
    driver_rss_mib: float
    driver_peak_mib: float
    executor_rss_mib: float
    executor_peak_mib: float
    python_rss_mib: float
    python_peak_mib: float
    local_files: int
    local_bytes: int
    work_files: int
    work_bytes: int
    driver_files: int
    driver_bytes: int


def peak_rss(proc: psutil.Process) -> int:
    """VmHWM: the most resident memory the process has had (bytes)."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _memory(procs: list[psutil.Process]) -> tuple[float, float]:
    rss = peak = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            rss += proc.memory_info().rss
            peak += peak_rss(proc)
    return rss / MiB, peak / MiB


def _files(folders: list[Path]) -> tuple[int, int]:
    count = size = 0
    for folder in folders:
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    count += 1
                    size += path.stat().st_size
    return count, size


def sample(cluster: StandaloneCluster, driver: Driver, round_index: int,
           driver_local: Path) -> Sample:
    executors = cluster.executor_processes()
    workers = [child for executor in executors
               for child in _children(executor)]
    return Sample(round_index, *_memory(driver.processes()), *_memory(executors),
                  *_memory(workers), *_files(cluster.local_dirs()), *_files(cluster.work_dirs()),
                  *_files([driver_local]))


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []


def long_run(cluster: StandaloneCluster, run_dir: Path, *, rounds: int, at: tuple[int, ...],
             train_args: tuple[str, ...], timeout: float = 3600) -> dict[str, Any]:
    """Runs ``rounds`` rounds; samples when round ``r`` in ``at`` has been logged."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    command = train_command(cluster.master_url, "--rounds", str(rounds), "--output",
                            str(run_dir), *train_args)
    driver_local = run_dir.parent / "driver-local"
    driver_local.mkdir(exist_ok=True)
    driver = Driver.start(command, log=run_dir.with_suffix(".log"),
                          env={"SPARK_LOCAL_DIRS": str(driver_local)})
    metrics = run_dir / "metrics.jsonl"
    samples: list[Sample] = []
    pending = sorted(at)
    started = time.monotonic()
    try:
        while pending and driver.popen.poll() is None:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the {rounds}-round run did not finish in {timeout:.0f} s")
            done = _lines(metrics)
            if done >= pending[0]:
                samples.append(sample(cluster, driver, done, driver_local))
                pending.pop(0)
            time.sleep(0.02)  # polling the metrics file for progress
        code = driver.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    finally:
        driver.kill()
    return {"exit_code": code, "output_tail": driver.output()[-2000:],
            "samples": [asdict(s) for s in samples], "seconds": time.monotonic() - started}


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0
