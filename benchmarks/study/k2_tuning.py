"""Samples to 89% for K = 2 with the Nesterov outer step, against the plain loop (simulated).

Answers "which tau and which rates for K = 2" with exact replays (``grid.run_job``, the engine's
own functions), evaluated on the full test set: the plain loop (one virtual worker that keeps
its momentum) at lr 0.01/0.02/0.04; K = 2, Nesterov, tau 50/100/200 at lr 0.01/0.02/0.04; and
outer lr/momentum variants at tau 100, lr 0.02. A run that turns NaN is recorded as diverged.
Results go to ``benchmarks/results/study/k2_tuning.jsonl`` (a rerun skips finished jobs) and
a table to ``k2_tuning.md``.

    .venv/bin/python benchmarks/study/k2_tuning.py [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from typing import Any

import grid

OUT = grid.RESULTS / "k2_tuning.jsonl"
TARGET = 0.89


def jobs() -> list[dict[str, Any]]:
    common = {"stop_at": 0.895, "test": "full", "eval_examples": 10000}
    found = [{"kind": "serial", "k": 1, "tau": 50, "outer": "average", "lr": lr,
              "momentum_policy": "average", "cap_steps": 4500, "eval_every": 2, **common}
             for lr in (0.02, 0.01, 0.04)]
    found += [{"kind": "tune", "k": 2, "tau": tau, "outer": "nesterov", "lr": lr,
               "cap_steps": 2400, "eval_every": max(1, 100 // tau), **common}
              for lr in (0.01, 0.02, 0.04) for tau in (50, 100, 200)]
    base = {"kind": "tune", "k": 2, "outer": "nesterov", "cap_steps": 2000, "tau": 100,
            "lr": 0.02, "eval_every": 1, **common}
    found += [{**base, "outer_lr": 1.0, "outer_momentum": 0.8}, {**base, "outer_lr": 1.0},
              {**base, "outer_lr": 0.7, "outer_momentum": 0.8}]
    return found


def run(job: dict[str, Any]) -> dict[str, Any]:
    from sparknet.errors import TrainingError

    try:
        return grid.run_job(job)
    except TrainingError as exc:
        return {"key": grid.job_key(job), "job": job, "diverged": str(exc), "curve": []}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| contender | tau | lr | outer lr | outer momentum | samples to 89% |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        job = row["job"]
        hit = next((r["samples"] for r in row["curve"] if r["test_accuracy"] >= TARGET), None)
        shown = ("diverged (NaN)" if row.get("diverged") else
                 f"{hit:,}" if hit else f"not in {row['curve'][-1]['samples']:,}")
        name = "plain loop" if job["kind"] == "serial" else "K=2 nesterov"
        outer = ("", "") if job["kind"] == "serial" else (job.get("outer_lr", 0.7),
                                                           job.get("outer_momentum", 0.9))
        lines.append(f"| {name} | {job['tau'] if job['kind'] != 'serial' else ''} | "
                     f"{job['lr']} | {outer[0]} | {outer[1]} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    done = {}
    if OUT.is_file():
        done = {r["key"]: r for r in map(json.loads, OUT.read_text().splitlines())}
    todo = [job for job in jobs() if grid.job_key(job) not in done]
    with mp.get_context("fork").Pool(args.processes) as pool:
        for row in pool.imap_unordered(run, todo):
            done[row["key"]] = row
            with open(OUT, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    rows = [done[grid.job_key(job)] for job in jobs()]
    (OUT.with_suffix(".md")).write_text(
        "Samples to 89% (full test set), simulated; command: `.venv/bin/python "
        "benchmarks/study/k2_tuning.py`\n\n" + table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
