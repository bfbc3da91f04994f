#!/usr/bin/env python
"""Time lost to one killed executor (and to one killed Python worker) on a standalone cluster.

Starts a master + 2 one-core workers on 127.0.0.1 and runs ``sparknet train`` (784-32-10 MLP
on 4,000 Fashion-MNIST images, K=2, tau=10, b=32, 20 rounds) several times, interleaving:
undisturbed; the executor JVM running one task SIGKILLed in round ~10; that task's Python
worker SIGKILLed in round ~10. Each time is ``train()``'s wall clock (driver start-up
excluded). Ratios are against the undisturbed runs measured in the same invocation, and every
disturbed run's final weights are compared bit for bit with the undisturbed run's.

    .venv/bin/python benchmarks/recovery.py [--repeats 3]

Writes benchmarks/results/recovery.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, machine, write_report  # noqa: E402

from sparknet_testing.chaos import (  # noqa: E402
    Killer,
    arm_tripwire,
    clear_faults,
    run_driver,
    train_command,  # noqa: E402
)
from sparknet_testing.data import write_fashion_subset  # noqa: E402
from sparknet_testing.standalone import StandaloneCluster, standalone_cluster  # noqa: E402

TAU, ROUNDS, KILL_ROUND = 10, 20, 10
TRAIN_ARGS = ("--model", "sparknet_testing.faults:tripwire_net", "--num-workers", "2",
              "--tau", str(TAU), "--batch-size", "32", "--rounds", str(ROUNDS), "--lr", "0.05",
              "--eval-every", "0", "--checkpoint-every", "5", "--seed", "1")
KINDS = ("undisturbed", "executor", "python")


def one_run(cluster: StandaloneCluster, data: Path, run_dir: Path, kind: str) -> dict[str, Any]:
    clear_faults(cluster.fault_dir)
    killer = None
    if kind != "undisturbed":
        arm_tripwire(cluster.fault_dir, after_forwards=KILL_ROUND * TAU + 3)
        killer = Killer(cluster.fault_dir, kind).start()  # type: ignore[arg-type]
    code, output = run_driver(train_command(cluster.master_url, *TRAIN_ARGS, "--data-dir",
                                            str(data), "--output", str(run_dir)),
                              log=run_dir.with_suffix(".log"), timeout=600)
    if killer is not None:
        killer.join()
    clear_faults(cluster.fault_dir)
    if code != 0 or (killer is not None and not killer.killed):
        raise RuntimeError(f"{kind} run failed (exit {code}): {output[-2000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [r["round_seconds"] for r in records]
    slowest = int(np.argmax(rounds[1:])) + 1  # round 0 includes executor warm-up
    return {"kind": kind, "train_seconds": records[-1]["wall_seconds"],
            "round_seconds": rounds, "slowest_round": slowest + 1,
            "slowest_round_extra_seconds": rounds[slowest] - statistics.median(rounds[1:]),
            "weights": load_file(str(run_dir / "final" / "model.safetensors"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sparknet-recovery-") as tmp:
        root = Path(tmp)
        data = write_fashion_subset(root / "fashion")
        with standalone_cluster(root / "cluster") as cluster:
            one_run(cluster, data, root / "warmup", "undisturbed")  # JIT, page cache
            for repeat in range(args.repeats):
                for kind in KINDS:
                    runs.append(one_run(cluster, data, root / f"{kind}-{repeat}", kind))
                    print(kind, f"{runs[-1]['train_seconds']:.1f} s", flush=True)
    reference = runs[0]["weights"]
    for run in runs:
        weights = run.pop("weights")
        run["bit_identical"] = all(np.array_equal(weights[k], reference[k]) for k in reference)
    report = summarize(runs)
    report.update(command=command(), machine=machine(), train_args=list(TRAIN_ARGS),
                  kill=f"SIGKILL at forward pass {KILL_ROUND * TAU + 3} of one Python worker "
                       f"(round ~{KILL_ROUND + 1} of {ROUNDS})")
    path = write_report("recovery", markdown(report), report)
    print(path.read_text())
    return 0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    base = statistics.median(r["train_seconds"] for r in runs if r["kind"] == "undisturbed")
    summary = {}
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        median = statistics.median(r["train_seconds"] for r in mine)
        summary[kind] = {
            "median_train_seconds": median, "ratio_to_undisturbed": median / base,
            "seconds_lost": median - base,
            "median_slowest_round_extra_seconds": statistics.median(
                r["slowest_round_extra_seconds"] for r in mine),
            "all_bit_identical": all(r["bit_identical"] for r in mine)}
    return {"summary": summary, "runs": runs}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Recovery: time lost to one killed executor or Python worker", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Run: `sparknet train {' '.join(report['train_args'])}` on a standalone cluster "
             "(master + 2 one-core workers on 127.0.0.1)  ", f"Fault: {report['kill']}", "",
             "Times are train()'s wall clock (driver start-up excluded), medians over the "
             "repeats, all measured in this one invocation; the CPU was shared with other "
             "work, so single runs are noisy.", "",
             "| run | median seconds | ratio to undisturbed | seconds lost | extra seconds in "
             "the slowest round | final weights bit-identical |", "|---|---|---|---|---|---|"]
    for kind, s in report["summary"].items():
        lines.append(f"| {kind} | {s['median_train_seconds']:.1f} | "
                     f"{s['ratio_to_undisturbed']:.2f} | {s['seconds_lost']:+.1f} | "
                     f"{s['median_slowest_round_extra_seconds']:.1f} | "
                     f"{'yes' if s['all_bit_identical'] else 'NO'} |")
    lines += ["", "Each run: " + "; ".join(
        f"{r['kind']} {r['train_seconds']:.1f} s" for r in report["runs"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
