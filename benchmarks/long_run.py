#!/usr/bin/env python
"""500 rounds of a tiny network on a standalone cluster: does memory or disk grow?

Starts a master + 2 one-core workers on 127.0.0.1, runs ``sparknet train`` for 500 rounds
(784-32-10 MLP, K=2, tau=5, b=32, a checkpoint every 50 rounds) and samples, at rounds 50 and
500, resident memory (current and peak) of the driver, the executor JVMs and their Python
workers, and files/bytes under the workers' Spark local dirs and work dirs.

    .venv/bin/python benchmarks/long_run.py [--rounds 500]

Writes benchmarks/results/long_run.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import psutil

from sparknet_testing.data import write_fashion_subset
from sparknet_testing.resources import long_run
from sparknet_testing.standalone import standalone_cluster

RESULTS = Path(__file__).parent / "results"
TRAIN_ARGS = ("--model", "sparknet_testing.faults:tiny_net", "--num-workers", "2", "--tau", "5",
              "--batch-size", "32", "--lr", "0.05", "--eval-every", "0",
              "--checkpoint-every", "50", "--seed", "0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    at = (50, args.rounds)
    with tempfile.TemporaryDirectory(prefix="sparknet-long-") as tmp:
        root = Path(tmp)
        data = write_fashion_subset(root / "fashion")
        with standalone_cluster(root / "cluster") as cluster:
            report = long_run(cluster, root / "run", rounds=args.rounds, at=at,
                              train_args=(*TRAIN_ARGS, "--data-dir", str(data)))
    report.update(command=" ".join([sys.executable, *sys.argv]), rounds=args.rounds,
                  train_args=list(TRAIN_ARGS), machine=machine())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long_run.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "long_run.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["exit_code"] == 0 else 1


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30),
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average_at_end": os.getloadavg()}


def markdown(report: dict[str, object]) -> str:
    samples = report["samples"]
    assert isinstance(samples, list)
    rows = [("driver RSS (Python + JVM), MiB", "driver_rss_mib"),
            ("driver peak RSS (VmHWM), MiB", "driver_peak_mib"),
            ("executor JVMs RSS, MiB", "executor_rss_mib"),
            ("executor JVMs peak RSS, MiB", "executor_peak_mib"),
            ("executors' Python workers RSS, MiB", "python_rss_mib"),
            ("executors' Python workers peak RSS, MiB", "python_peak_mib"),
            ("files in workers' Spark local dirs", "local_files"),
            ("bytes in workers' Spark local dirs", "local_bytes"),
            ("files in workers' work dirs", "work_files"),
            ("bytes in workers' work dirs", "work_bytes"),
            ("files in the driver's Spark local dir", "driver_files"),
            ("bytes in the driver's Spark local dir", "driver_bytes")]
    head = " | ".join(f"round {s['round']}" for s in samples)
    lines = [f"# Long run: {report['rounds']} rounds on a standalone cluster", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Training arguments: `{' '.join(report['train_args'])}`  ",  # type: ignore[arg-type]
             f"Exit code {report['exit_code']}, {report['seconds']:.0f} s in all.", "",
             f"| measure | {head} |", "|---|" + "---|" * len(samples)]
    for label, key in rows:
        values = " | ".join(f"{s[key]:,.0f}" if isinstance(s[key], int) else f"{s[key]:,.1f}"
                            for s in samples)
        lines.append(f"| {label} | {values} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
