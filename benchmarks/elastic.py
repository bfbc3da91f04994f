#!/usr/bin/env python
"""Time lost (or gained) by workers leaving, joining and straggling on an elastic cluster.

Runs ``sparknet train`` (784-32-10 MLP on 4,000 Fashion-MNIST images, K=2, tau=1000, b=64:
about a second of local steps per task on the 2-core VM) with dynamic allocation (shuffle
tracking) and graceful decommissioning on, against one-core workers on loopback hosts
127.0.0.1 and 127.0.0.2, started by PySpark's own launcher (``sparknet_testing.standalone``).
``spark.dynamicAllocation.minExecutors`` is left to sparknet (K, the executors a round needs)
unless ``--min-executors`` sets it:

- ``undisturbed``: two workers throughout;
- ``one worker``: one worker throughout (what the added worker gains is measured against it);
- ``added``: one worker, a second one started once ``--add-after`` rounds (2) are logged;
  the report also says how long it took to register, to get an executor and to run a task;
- ``decommissioned``: two workers, one sent SIGPWR once half the rounds are logged;
- ``straggler``: two workers, from round 1 on the executor of one (its JVM and its Python
  workers) gets a tenth of a core by SIGSTOP/SIGCONT every 100 ms;
- ``straggler + speculation``: the same with ``spark.speculation`` on.

Times are ``train()``'s wall clock (driver start-up excluded), all measured in this one
invocation; every run's final weights are compared bit for bit with the undisturbed run's.

    .venv/bin/python benchmarks/elastic.py [--rounds 20] [--kinds added --min-executors 1]

Writes benchmarks/results/elastic.json and .md (``--report NAME``: NAME.json and .md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, machine_line, write_report  # noqa: E402

from sparknet_testing.chaos import Driver, Straggler, wait_for  # noqa: E402
from sparknet_testing.data import write_fashion_subset  # noqa: E402
from sparknet_testing.elastic import (  # noqa: E402
    ELASTIC_SETTINGS,
    SPECULATION_SETTINGS,
    WORKER_DECOMMISSION_OPTS,
    WORKER_HOSTS,
    ElasticRun,
    EventLog,
    rounds_logged,
    submit_args,
)
from sparknet_testing.standalone import StandaloneCluster, start_cluster  # noqa: E402

KINDS = ("undisturbed", "one worker", "added", "decommissioned", "straggler",
         "straggler + speculation")
STRAGGLER_SHARE = 0.1
TAU = 1000
ADD_AFTER = 2
TRAIN_ARGS = ("sparknet train --master spark://127.0.0.1:PORT --model "
              "sparknet_testing.faults:tripwire_net --num-workers 2 --tau {tau} --batch-size 64 "
              "--rounds {rounds} --lr 0.05 --eval-every 0 --seed 3 --train-limit 4000 "
              "--test-limit 1000 (sparknet_testing.elastic.ElasticRun)")


def one_run(root: Path, data: Path, kind: str, rounds: int, tau: int,
            min_executors: int | None, add_after: int) -> dict[str, Any]:
    workers = 1 if kind in ("one worker", "added") else 2
    cluster: StandaloneCluster = start_cluster(
        root / f"cluster-{kind}", num_workers=workers, cores_per_worker=1,
        worker_hosts=WORKER_HOSTS, daemon_opts=WORKER_DECOMMISSION_OPTS)
    run_dir = root / kind.replace(" ", "-").replace("+", "and")
    # minExecutors is sparknet's (K = 2, so two executors are requested from the start)
    # unless --min-executors overrides it.
    settings = {**ELASTIC_SETTINGS,
                **({} if min_executors is None else
                   {"spark.dynamicAllocation.minExecutors": str(min_executors)}),
                **(SPECULATION_SETTINGS if kind == "straggler + speculation" else {})}
    run = ElasticRun(cluster=cluster, fashion_dir=data, rounds=rounds, tau=tau)
    straggler = Straggler(lambda: cluster.launched_by_worker(1), share=STRAGGLER_SHARE)
    event = ""
    added_at = registered_at = 0.0
    try:
        driver = Driver.start(run.command(run_dir), log=run_dir.with_suffix(".log"),
                              env=submit_args(settings, run_dir.with_suffix(".events")))
        try:
            if kind == "added":
                wait_for(lambda: rounds_logged(run_dir) >= add_after, timeout=600,
                         what=f"round {add_after}", poll=0.1)
                event = f"worker added after round {rounds_logged(run_dir)}"
                added_at = time.time()
                cluster.add_worker(host=WORKER_HOSTS[1], daemon_opts=WORKER_DECOMMISSION_OPTS)
                registered_at = time.time()
            elif kind == "decommissioned":
                wait_for(lambda: rounds_logged(run_dir) >= rounds // 2, timeout=600,
                         what="half the rounds", poll=0.1)
                event = f"worker decommissioned after round {rounds_logged(run_dir)}"
                cluster.decommission_worker(1)
            elif kind.startswith("straggler"):
                wait_for(lambda: rounds_logged(run_dir) >= 1, timeout=600,
                         what="the first round", poll=0.1)
                event = f"worker slowed to {STRAGGLER_SHARE} of a core after round 1"
                straggler.start()
            code = driver.wait(timeout=1200)
            straggler.stop()
            if code != 0:
                raise RuntimeError(f"{kind} run failed (exit {code}): {driver.output()[-2000:]}")
            # Before kill(): the driver JVM closes the event log in its shutdown hook.
            log = EventLog.read(run_dir.with_suffix(".events"))
        finally:
            straggler.stop()
            driver.kill()
    finally:
        cluster.stop()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    done = log.succeeded()
    joined = _joined(log, WORKER_HOSTS[1], added_at, registered_at) if added_at else {}
    return {"kind": kind, "event": event, "train_seconds": records[-1]["wall_seconds"],
            "added_worker": joined,
            "round_seconds": [r["round_seconds"] for r in records],
            "tasks_per_host": {host: sum(1 for t in done if t.host == host)
                               for host in sorted({t.host for t in done})},
            "speculative_wins": sum(1 for t in done if t.speculative),
            "executors_removed": dict(log.removed),
            "weights": load_file(str(run_dir / "final" / "model.safetensors"))}


def _joined(log: EventLog, host: str, added_at: float, registered_at: float
            ) -> dict[str, Any]:
    """Seconds from starting the added worker to: the master listing it, its executor
    registering with the driver, its first task starting, and the rounds it ran tasks in."""
    executors = [e for e, h in log.executor_hosts.items() if h == host]
    there = sorted(t.launched_ms for t in log.succeeded() if t.host == host)
    return {
        "registered_s": registered_at - added_at,
        "executor_s": (min(log.added_ms[e] for e in executors) / 1000 - added_at
                       if executors else None),
        "first_task_s": there[0] / 1000 - added_at if there else None,
        "jobs_with_a_task_there": len({t.stage for t in log.succeeded() if t.host == host}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="which runs, comma-separated (the first is the reference)")
    parser.add_argument("--keep", type=Path, help="keep run folders and event logs here")
    parser.add_argument("--tau", type=int, default=TAU)
    parser.add_argument("--min-executors", type=int, default=None,
                        help="spark.dynamicAllocation.minExecutors (default: sparknet's, K)")
    parser.add_argument("--add-after", type=int, default=ADD_AFTER,
                        help="the added worker starts once this many rounds are logged")
    parser.add_argument("--report", default="elastic", help="results/NAME.md and .json")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sparknet-elastic-") as tmp:
        root = args.keep or Path(tmp)
        data = write_fashion_subset(root / "fashion")
        for kind in args.kinds.split(","):
            runs.append(one_run(root, data, kind, args.rounds, args.tau, args.min_executors,
                                args.add_after))
            print(kind, f"{runs[-1]['train_seconds']:.1f} s", flush=True)
    reference = runs[0]["weights"]
    base = runs[0]["train_seconds"]
    for run in runs:
        weights = run.pop("weights")
        run["bit_identical"] = sorted(weights) == sorted(reference) and all(
            np.array_equal(weights[k], reference[k]) for k in reference)
        run["ratio_to_undisturbed"] = run["train_seconds"] / base
        run["seconds_lost"] = run["train_seconds"] - base
    report = {"runs": runs, "command": command(), "machine": machine_line(),
              "train_args": TRAIN_ARGS.format(rounds=args.rounds, tau=args.tau),
              "settings": ELASTIC_SETTINGS, "speculation": SPECULATION_SETTINGS,
              "min_executors": args.min_executors, "add_after": args.add_after}
    path = write_report(args.report, markdown(report), report)
    print(path.read_text())
    return 0


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Elastic clusters: time lost to a worker leaving, joining or straggling", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Run: `{report['train_args']}`  ",
             "Cluster: a master and one-core workers on loopback hosts 127.0.0.1 and 127.0.0.2 "
             "(PySpark's own launcher), a fresh cluster for each run  ",
             "Driver settings: " + ", ".join(f"`{k}={v}`" for k, v in
                                             report["settings"].items())
             + "; `spark.dynamicAllocation.minExecutors`: "
             + (f"`{report['min_executors']}` (--min-executors)" if report["min_executors"]
                else "sparknet's, 2 (= K: executors a round's tasks need)") + "  ",
             "Speculation: " + ", ".join(f"`{k}={v}`" for k, v in
                                         report["speculation"].items()), "",
             "Times are train()'s wall clock (driver start-up excluded), one run each, all "
             "measured in this one invocation on a CPU shared with other work.", "",
             "| run | event | seconds | ratio to undisturbed | seconds lost | successful tasks "
             "per host | speculative copies that won | final weights bit-identical |",
             "|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        hosts = ", ".join(f"{h}: {n}" for h, n in run["tasks_per_host"].items())
        lines.append(f"| {run['kind']} | {run['event'] or '-'} | {run['train_seconds']:.1f} | "
                     f"{run['ratio_to_undisturbed']:.2f} | {run['seconds_lost']:+.1f} | "
                     f"{hosts} | {run['speculative_wins']} | "
                     f"{'yes' if run['bit_identical'] else 'NO'} |")
    by_kind = {run["kind"]: run for run in report["runs"]}
    added = by_kind.get("added", {}).get("added_worker")
    if added:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        lines += ["", "The added worker, timed from starting its JVM: the master listed it "
                  f"after {seconds(added['registered_s'])}, its executor registered with the "
                  f"driver after {seconds(added['executor_s'])}, its first task started after "
                  f"{seconds(added['first_task_s'])}; it ran tasks in "
                  f"{added['jobs_with_a_task_there']} jobs."]
        if "one worker" in by_kind:
            alone, joined = (by_kind[k]["train_seconds"] for k in ("one worker", "added"))
            lines.append(f"Against one worker throughout ({alone:.1f} s), the added worker "
                         f"changed the run's time by {joined - alone:+.1f} s "
                         f"({joined / alone:.2f}).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
