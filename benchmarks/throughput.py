"""Samples/s of SparkNet rounds on local[2] vs a plain single-process PyTorch loop.

LeNet (Caffe layout), Fashion-MNIST, batch 64. For K in {1, 2} and tau in {1, 10, 50, 200}
the engine runs warm-up rounds, then timed rounds; the plain loop runs with 1 and 2 threads in
the same run. Reports scaling efficiency = throughput(K) / (K * plain 1-thread throughput) and
the per-round overhead = round wall time - the slowest worker's compute time.

    .venv/bin/python benchmarks/throughput.py [--taus 1,10,50,200] [--quick]
"""

from __future__ import annotations

import argparse
import statistics

from baseline import BATCH, loop_throughput, side_by_side
from common import command, machine, write_report

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data import fashion_mnist
from sparknet.data.shards import InputSpec
from sparknet.data.sources import from_arrays
from sparknet.engine.spark_session import get_or_create_session
from sparknet.engine.trainer import train

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


def engine_run(sc, train_arrays, *, k: int, tau: int, timed_rounds: int) -> dict[str, float]:
    warmup = 2
    data = from_arrays(sc, train=train_arrays, test=None, spec=SPEC, num_workers=k, seed=0)
    config = TrainConfig(outer=OuterConfig(name="average"), model="lenet", seed=0,
                         engine=EngineConfig(num_workers=k, tau=tau, batch_size=BATCH,
                                             rounds=warmup + timed_rounds, eval_every=0),
                         optimizer=OptimizerConfig(momentum_policy="reset", lr=0.01, momentum=0.9))
    result = train(data, config=config, progress=False)
    data.release()
    timed = result.metrics[warmup:]
    round_s = statistics.median(r["round_seconds"] for r in timed)
    compute_s = statistics.median(r["compute_seconds"] for r in timed)
    return {"samples_per_s": k * tau * BATCH / round_s, "round_ms": 1000 * round_s,
            "compute_ms": 1000 * compute_s,
            "overhead_ms": statistics.median(1000 * r["overhead_seconds"] for r in timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taus", default="1,10,50,200")
    parser.add_argument("--quick", action="store_true", help="fewer timed rounds (smoke run)")
    args = parser.parse_args()
    taus = [int(t) for t in args.taus.split(",")]

    split = fashion_mnist.load_split("train")
    arrays = (split.images, split.labels)
    spark = get_or_create_session("local[2]", app_name="sparknet-bench-throughput")
    sc = spark.sparkContext

    plain_steps = 100 if args.quick else 400
    # the loop now samples with the engine's batch_indices (epoch-wise, without replacement),
    # not uniformly with replacement: the same sampling as the K = 1 worker it is compared to
    plain = {threads: loop_throughput(*arrays, threads=threads, steps=plain_steps)
             for threads in (1, 2)}
    pair = side_by_side(plain_steps)
    ceiling = statistics.mean(pair) / plain[1]
    rows = []
    for tau in taus:
        timed_rounds = max(4, min(40, 400 // tau)) if not args.quick else 2
        for k in (1, 2):
            stats = engine_run(sc, arrays, k=k, tau=tau, timed_rounds=timed_rounds)
            stats.update(k=k, tau=tau, rounds=timed_rounds,
                         efficiency=stats["samples_per_s"] / (k * plain[1]))
            rows.append(stats)
            print(f"K={k} tau={tau}: {stats['samples_per_s']:.0f} samples/s, efficiency "
                  f"{stats['efficiency']:.3f}, overhead {stats['overhead_ms']:.0f} ms", flush=True)
    # the plain loop again at the end: drift in machine load shows up as a difference
    plain_after = loop_throughput(*arrays, threads=1, steps=plain_steps)
    spark.stop()

    info = machine()
    lines = [
        "# Throughput: SparkNet rounds vs a plain PyTorch loop",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}; {info['date']}",
        "",
        "LeNet (Caffe layout), Fashion-MNIST, batch 64 per step, SGD momentum 0.9, Spark "
        "`local[2]`, one PyTorch thread per worker. Medians over the timed rounds after 2 "
        "warm-up rounds. Efficiency = samples/s(K) / (K x plain 1-thread samples/s), both "
        "measured in this run. Overhead = round wall time - slowest worker's compute time.",
        "",
        f"Plain PyTorch loop: 1 thread {plain[1]:.0f} samples/s "
        f"({1000 * BATCH / plain[1]:.1f} ms/step), 2 threads {plain[2]:.0f} samples/s "
        f"({1000 * BATCH / plain[2]:.1f} ms/step); 1 thread again at the end "
        f"{plain_after:.0f} samples/s.",
        "",
        f"Two plain 1-thread loops side by side in two processes: {pair[0]:.0f} and "
        f"{pair[1]:.0f} samples/s, {ceiling:.3f} of one loop alone. That is the ceiling of "
        "K = 2 efficiency on this machine before any Spark overhead.",
        "",
        "| K | tau | samples/s | efficiency | round (ms) | slowest compute (ms) | overhead (ms) |",
        "|---|-----|-----------|------------|------------|----------------------|---------------|",
    ]
    for r in rows:
        lines.append(f"| {r['k']} | {r['tau']} | {r['samples_per_s']:.0f} | "
                     f"{r['efficiency']:.3f} | {r['round_ms']:.0f} | {r['compute_ms']:.0f} | "
                     f"{r['overhead_ms']:.0f} |")
    path = write_report("throughput", "\n".join(lines) + "\n",
                        {"machine": info, "command": command(), "plain": plain,
                         "plain_1_thread_after": plain_after, "side_by_side": pair,
                         "k2_ceiling": ceiling, "rows": rows})
    print(f"report: {path}")


if __name__ == "__main__":
    main()
