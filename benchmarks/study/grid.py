"""SparkNet's speedup study, simulated: one accuracy curve per (K, tau, outer optimizer).

Runs K virtual workers (``sparknet.simulate``) on LeNet (Caffe layout) / Fashion-MNIST, batch 64
per worker, SGD lr 0.01 momentum 0.9. Curves are written to
``benchmarks/results/study/curves.jsonl`` one job at a time (a rerun skips finished jobs);
``plots.py`` turns them into heat maps and S-sweeps with the time model rounds*(tau*C + S).

Budget rules (2 CPU cores): each grid run stops at its target, or once its local steps per
worker exceed the serial loop's steps to that target (its speedup at S = 0 is then below 1,
shown as "<1"). The grid evaluates on a fixed subset of the test set (--eval-examples).

    .venv/bin/python benchmarks/study/grid.py --processes 2 --ks 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "study"
TAUS = (1, 5, 10, 25, 50, 100, 200, 500)
EVAL_STEPS = 50  # evaluate about every 50 local steps per worker (modelled-time resolution)
_DATA: dict[str, Any] = {}


def job_key(job: dict[str, Any]) -> str:
    return json.dumps({k: job[k] for k in sorted(job) if k != "priority"}, sort_keys=True)


def _data(eval_examples: int) -> dict[str, Any]:
    if not _DATA:
        from sparknet.data import fashion_mnist

        train = fashion_mnist.load_split("train")
        test = fashion_mnist.load_split("test")
        _DATA.update(train=(train.images, train.labels), test_full=(test.images, test.labels),
                     test_subset=(test.images[:eval_examples], test.labels[:eval_examples]))
    return _DATA


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.data.shards import InputSpec
    from sparknet.simulate import simulate

    torch.set_num_threads(1)
    data = _data(job["eval_examples"])
    tau = job["tau"]
    rounds = math.ceil(job["cap_steps"] / tau)
    eval_every = job.get("eval_every") or max(1, round(EVAL_STEPS / tau))
    config = TrainConfig(
        model="lenet", seed=0,
        engine=EngineConfig(num_workers=job["k"], tau=tau, batch_size=64, rounds=rounds,
                            eval_every=eval_every),
        optimizer=OptimizerConfig(lr=job["lr"], momentum=0.9,
                                  momentum_policy=job.get("momentum_policy", "reset")),
        outer=OuterConfig(name=job["outer"], lr=job.get("outer_lr", 0.7),
                          momentum=job.get("outer_momentum", 0.9),
                          compression=job.get("compression", "none")))
    target = job.get("stop_at")
    test = data["test_full"] if job["test"] == "full" else data["test_subset"]
    started = time.perf_counter()
    result = simulate(data["train"], config=config, test=test,
                      spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
                      stop=(lambda r: r["test_accuracy"] >= target) if target else None)
    keep = ("round", "tau", "samples", "steps_per_worker", "bytes_per_worker", "test_accuracy",
            "test_loss", "train_loss")
    return {"key": job_key(job), "job": job, "step_seconds": result.step_seconds,
            "run_seconds": time.perf_counter() - started,
            "curve": [{k: r[k] for k in keep} for r in result.curve()]}


def grid_jobs(ks: list[int], *, serial_steps: dict[float, int], targets: list[float],
              eval_examples: int) -> list[dict[str, Any]]:
    jobs = []
    for target in targets:
        for k in ks:
            for outer in ("average", "nesterov"):
                for tau in TAUS:
                    jobs.append({"kind": "grid", "k": k, "tau": tau, "outer": outer, "lr": 0.01,
                                 "stop_at": target, "cap_steps": serial_steps[target],
                                 "test": "subset", "eval_examples": eval_examples,
                                 "priority": (targets.index(target), k)})
    return sorted(jobs, key=lambda j: j["priority"])


def fixed_jobs(eval_examples: int) -> list[dict[str, Any]]:
    """The serial reference, the outer-default sweep and the compression runs (K=2, tau=50)."""
    base = {"k": 2, "tau": 50, "lr": 0.01, "test": "full", "eval_examples": eval_examples,
            "eval_every": 5}
    jobs: list[dict[str, Any]] = [
        # K=1 with the worker's momentum carried across rounds is a plain SGD loop.
        {"kind": "serial", "k": 1, "tau": EVAL_STEPS, "outer": "average", "lr": 0.01,
         "momentum_policy": "average", "stop_at": 0.89, "cap_steps": 8000, "test": "subset",
         "eval_examples": eval_examples},
    ]
    for outer_lr, outer_momentum in ((0.5, 0.9), (0.7, 0.9), (1.0, 0.9), (0.7, 0.8)):
        jobs.append({**base, "kind": "outer-sweep", "outer": "nesterov", "outer_lr": outer_lr,
                     "outer_momentum": outer_momentum, "cap_steps": 500})
    for compression in ("none", "bf16", "int8"):
        jobs.append({**base, "kind": "compression", "outer": "nesterov",
                     "compression": compression, "cap_steps": 1000})
    return jobs


def serial_steps_to(curve: list[dict[str, Any]], target: float, cap: int) -> int:
    for record in curve:
        if record["test_accuracy"] >= target:
            return int(record["steps_per_worker"])
    return cap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="1,2,4,8", help="comma-separated K values")
    parser.add_argument("--targets", default="0.85", help="grid targets (comma-separated)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--eval-examples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS / "curves.jsonl")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    (args.out.parent / "machine.json").write_text(json.dumps({
        "machine": platform.platform(), "processor": platform.processor(),
        "cpus": mp.cpu_count(), "python": platform.python_version(),
        "command": " ".join([sys.executable, *sys.argv])}, indent=2))

    def record(row: dict[str, Any]) -> None:
        done[row["key"]] = row
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        job = row["job"]
        last = row["curve"][-1] if row["curve"] else {}
        print(f"[{time.strftime('%H:%M:%S')}] {job['kind']} K={job['k']} tau={job['tau']} "
              f"{job['outer']} -> acc {last.get('test_accuracy')} at "
              f"{last.get('steps_per_worker')} steps/worker ({row['run_seconds']:.0f} s)",
              flush=True)

    ctx = mp.get_context("fork")
    with ctx.Pool(args.processes, maxtasksperchild=None) as pool:
        first = fixed_jobs(args.eval_examples)
        pending = [pool.apply_async(run_job, (job,)) for job in first
                   if job_key(job) not in done]
        for handle in pending:
            record(handle.get())
        serial = done[job_key(first[0])]
        steps = {t: serial_steps_to(serial["curve"], t, first[0]["cap_steps"]) for t in targets}
        print(f"serial steps to targets: {steps}", flush=True)
        jobs = [job for job in grid_jobs(ks, serial_steps=steps, targets=targets,
                                         eval_examples=args.eval_examples)
                if job_key(job) not in done]
        for row in pool.imap_unordered(run_job, jobs):
            record(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
