"""Where a round's time goes besides the workers' steps: Spark's per-job floor, part by part,
against sparknet's rounds, for the classic and the Connect runner, K = 1, 2, 4.

Each phase runs in its own process (one SparkContext, or one Connect client, per process):

- ``classic-spark-defaults``: the floor as it was: a session with Spark's own settings for
  what sparknet tunes (compressed broadcasts, results above 1 MiB fetched from the block
  manager, PySpark's daemon with its full collection after every task), and Python workers
  that hold sparknet's modules, PyTorch and a built network
  without freezing them out of the collector;
- ``classic``: a session as sparknet starts it (``engine.spark_session``), workers as
  sparknet's (``engine.model_cache.freeze_long_lived``);
- ``connect``: a Spark Connect server on ``local[2]`` started with PySpark's launcher with
  sparknet's settings (``docs/engine.md`` says which a user sets on their own server).

In each, the parts are measured alternating, one of each per repetition, on a cached K-row
dataset (classic: a K-row RDD, as the memory placement's rounds run; Connect: a cached K-row
DataFrame, as the frames placement's), every task in a Python worker that has imported PyTorch
and built a network (as sparknet's do): an empty job; the state broadcast (classic) or carried
in the plan (Connect) and read by every task; every task returning a result of the state's
size; both. sparknet's rounds then run LeNet (its state is the size used above) with tau = 1 on
Fashion-MNIST, synchronous and overlapped, and their overhead is the round's wall time minus
the slowest worker's compute time. Medians.

    .venv/bin/python benchmarks/round_overhead.py [--reps 15] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, machine, machine_line, write_report  # noqa: E402

WORKERS = (1, 2, 4)
WARMUP_ROUNDS = 3
# Spark's defaults for the settings sparknet's sessions change (engine.spark_session).
SPARK_DEFAULTS = {"spark.broadcast.compress": "true", "spark.task.maxDirectResultSize": "1m",
                  "spark.python.daemon.module": "pyspark.daemon"}


def lenet_state_floats() -> int:
    from sparknet.engine.state import initial_state
    from sparknet.models import resolve_model

    _, floats, ints = initial_state(resolve_model("lenet"), 0)
    return floats.size + ints.size * 2  # int64 ints travel as two floats' worth of bytes


def like_sparknet_worker(freeze: bool) -> None:
    """Runs in a task: the Python worker holds what a sparknet worker holds (sparknet's worker
    modules, PyTorch, a built LeNet), frozen out of the collector as sparknet's are if
    ``freeze``; built once per worker."""
    import sys
    import types

    holder = sys.modules.setdefault("round_overhead_worker", types.ModuleType("holder"))
    if hasattr(holder, "network"):
        return
    from sparknet.engine import tasks  # noqa: F401 - the modules a round's task loads
    from sparknet.models import resolve_model

    if freeze:
        from sparknet.engine.model_cache import cached_network

        holder.network = cached_network(resolve_model("lenet"))  # builds, then freezes
    else:
        holder.network = resolve_model("lenet").build()


def classic_parts(spark: Any, k: int, floats: int, reps: int, freeze: bool) -> dict[str, float]:
    sc = spark.sparkContext
    rows = sc.parallelize(range(k), k)  # as sparknet's memory placement runs its rounds
    state = np.ones(floats, np.float32)

    def empty() -> None:
        rows.mapPartitions(lambda _: [like_sparknet_worker(freeze)]).collect()

    def broadcast() -> None:
        shared = sc.broadcast((state,))
        rows.mapPartitions(lambda _: [like_sparknet_worker(freeze),
                                      int(shared.value[0].size)]).collect()
        shared.destroy()

    def results() -> None:
        rows.mapPartitions(lambda _: [like_sparknet_worker(freeze),
                                      np.ones(floats, np.float32)]).collect()

    def both() -> None:
        shared = sc.broadcast((state,))
        rows.mapPartitions(lambda _: [like_sparknet_worker(freeze),
                                      shared.value[0] + 1]).collect()
        shared.destroy()

    return alternate({"empty job": empty, "+ broadcast": broadcast, "+ results": results,
                      "+ both": both}, reps)


def connect_parts(spark: Any, k: int, floats: int, reps: int, freeze: bool) -> dict[str, float]:
    import pyarrow as pa

    frame = spark.range(k).repartition(k).cache()
    frame.count()
    raw = np.ones(floats, np.float32).tobytes()

    def mapped(fn: Any) -> None:
        def task(batches: Any) -> Any:
            like_sparknet_worker(freeze)
            for _ in batches:
                pass
            yield pa.RecordBatch.from_pylist([{"b": fn()}], schema=pa.schema([("b", pa.binary())]))
        frame.mapInArrow(task, "b binary").toArrow()

    timings = alternate({
        "empty job": lambda: mapped(lambda: b""),
        "+ state in the plan": lambda: mapped(lambda: raw[:8]),
        "+ results": lambda: mapped(lambda: np.ones(floats, np.float32).tobytes()),
        "+ both": lambda: mapped(lambda: (np.frombuffer(raw, np.float32) + 1).tobytes()),
    }, reps)
    frame.unpersist()
    return timings


def alternate(parts: dict[str, Any], reps: int) -> dict[str, float]:
    for fn in parts.values():  # warm-up: Python workers started, closures cached
        fn()
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(reps):
        for name, fn in parts.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in samples.items()}


def sparknet_rounds(spark: Any, k: int, rounds: int, overlap: str) -> dict[str, float]:
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.trainer import train

    data = fashion_mnist_data(spark, num_workers=k, seed=0, train_limit=4000, test_limit=1)
    config = TrainConfig(outer=OuterConfig(name="average"), model="lenet", checkpoint_every=0,
                         engine=EngineConfig(num_workers=k, tau=1, batch_size=64,
                                             rounds=WARMUP_ROUNDS + rounds, eval_every=0,
                                             overlap=overlap),  # type: ignore[arg-type]
                         optimizer=OptimizerConfig(momentum_policy="reset", lr=0.01))
    result = train(data, config=config, progress=False)
    data.release()
    timed = result.metrics[WARMUP_ROUNDS:]
    return {"round": 1000 * statistics.median(r["round_seconds"] for r in timed),
            "compute": 1000 * statistics.median(r["compute_seconds"] for r in timed),
            "overhead": 1000 * statistics.median(r["overhead_seconds"] for r in timed)}


def run_phase(args: argparse.Namespace) -> None:
    from sparknet.engine.spark_session import get_or_create_session, remote_session

    floats = lenet_state_floats()
    if args.remote:
        spark = remote_session(args.remote)
    else:
        extra = SPARK_DEFAULTS if args.phase == "classic-spark-defaults" else None
        spark = get_or_create_session("local[2]", extra_conf=extra)
    parts = connect_parts if args.remote else classic_parts
    out: dict[str, Any] = {"state_bytes": floats * 4, "rows": []}
    for k in WORKERS:
        freeze = args.phase != "classic-spark-defaults"
        row: dict[str, Any] = {"k": k, "parts": parts(spark, k, floats, args.reps, freeze)}
        if args.phase != "classic-spark-defaults":
            row["sync"] = sparknet_rounds(spark, k, args.rounds, "off")
            row["overlap"] = sparknet_rounds(spark, k, args.rounds, "eager")
        out["rows"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(out))


def child(phase: str, *options: str) -> Any:
    done = subprocess.run([sys.executable, __file__, "--phase", phase, *options],
                          capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--phase", default=None)
    parser.add_argument("--remote", default=None)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    counts = ("--reps", str(args.reps), "--rounds", str(args.rounds))
    phases = {"classic-spark-defaults": child("classic-spark-defaults", *counts),
              "classic": child("classic", *counts)}
    from sparknet.engine.spark_session import SESSION_SETTINGS
    from sparknet_testing.connect_server import connect_server

    with tempfile.TemporaryDirectory() as folder, \
            connect_server(Path(folder) / "server", master="local[2]", driver_memory="4g",
                           conf=SESSION_SETTINGS) as server:
        phases["connect"] = child("connect", "--remote", server.url, *counts)
    report = {"machine": machine(), "command": command(), "phases": phases}
    path = write_report("round_overhead", markdown(report), report)
    print(f"report: {path}")


def markdown(report: dict[str, Any]) -> str:
    phases = report["phases"]
    size = phases["classic"]["state_bytes"] / 2**20
    lines = [
        "# Round overhead: Spark's per-job floor, part by part, and sparknet's rounds",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine_line()}; {report['machine']['date']}",
        "",
        f"Master `local[2]`; the state is LeNet's ({size:.2f} MiB). Each part is the median "
        "of its repetitions, measured alternating with the other parts in one process, "
        "every task in a Python worker that holds PyTorch and a built LeNet: an empty job of K "
        "tasks "
        "(classic: over a K-row RDD; Connect: over a cached K-row DataFrame), then with the"
        " state broadcast (in the plan on Connect) and read by every task, with every task "
        "returning a result of the state's size, and both. sparknet's rounds: LeNet, tau = "
        "1, batch 64, overhead = round wall time - slowest worker's compute (medians after "
        f"{WARMUP_ROUNDS} warm-up rounds); overlapped rounds are `engine.overlap = eager`.",
        "",
        "| session | K | empty job (ms) | + state (ms) | + results (ms) | + both: the floor (ms) "
        "| sparknet sync overhead (ms) | sync / floor | overlapped overhead (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, phase in phases.items():
        for row in phase["rows"]:
            p = list(row["parts"].values())
            sync, over = row.get("sync"), row.get("overlap")
            ratio = f"{sync['overhead'] / p[3]:.2f}" if sync else ""
            lines.append(
                f"| {name} | {row['k']} | {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} | {p[3]:.0f} | "
                f"{sync['overhead']:.0f} | {ratio} | {over['overhead']:.0f} |" if sync else
                f"| {name} | {row['k']} | {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} | {p[3]:.0f} "
                "| | | |")
    lines += ["", "The floor as sparknet now runs it (its session settings, PyTorch frozen out "
              "of the collector in its workers) against how it ran before (Spark's defaults, "
              "workers collecting PyTorch's objects after every task), same K:", ""]
    for base, tuned in zip(phases["classic-spark-defaults"]["rows"], phases["classic"]["rows"],
                           strict=True):
        b, t = base["parts"], tuned["parts"]
        cuts = ", ".join(f"{name} {t[name] - b[name]:+.0f} ms"
                         for name in b)
        lines.append(f"- K = {base['k']}: {cuts} (negative: sparknet's settings are faster)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
