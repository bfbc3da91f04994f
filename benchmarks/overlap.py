"""Overlapped rounds against synchronous ones on ``local[2]``: scaling efficiency, and time to
89% test accuracy on Fashion-MNIST, in one run.

1. Efficiency, as ``benchmarks/throughput.py`` measures it: samples/s of K = 2 rounds over
   K x the samples/s of a plain 1-thread PyTorch loop measured in this run (LeNet, batch 64,
   the full training set, no evaluation), synchronous and overlapped (``engine.overlap =
   decoupled`` and ``eager``), tau = 50 and 10; medians of the timed rounds after the warm-up
   rounds. Before the first timed run the session trains for ``--jvm-warmup-seconds``
   untimed: the driver JVM's JIT compiler otherwise takes a tenth of a core for minutes
   after start, which is steady-state efficiency's business only as a one-off cost.
2. Time to 89% (``benchmarks/head_to_head.py``'s protocol, on the outer step overlap
   supports): LeNet, K = 2, the plain average, the same learning rate and seed for every run,
   the full test set evaluated every 12,800 training samples; the clock is wall time since
   the first round minus the evaluation jobs' own time. An overlapped run reports a round
   when its evaluation is done, one round late, so its clock is if anything long.

    .venv/bin/python benchmarks/overlap.py [--lr 0.02] [--max-seconds 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import BATCH, SEED, loop_throughput, side_by_side  # noqa: E402
from common import command, machine, machine_line, write_report  # noqa: E402

TARGET = 0.89
MODES = ("off", "decoupled", "eager")
EVAL_SAMPLES = 12_800
WARMUP_ROUNDS = 3


def config(*, tau: int, overlap: str, rounds: int, eval_every: int, lr: float) -> Any:
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig

    return TrainConfig(outer=OuterConfig(name="average"), model="lenet", seed=SEED,
                       checkpoint_every=0,
                       engine=EngineConfig(num_workers=2, tau=tau, batch_size=BATCH,
                                           rounds=rounds, eval_every=eval_every,
                                           overlap=overlap),  # type: ignore[arg-type]
                       optimizer=OptimizerConfig(momentum_policy="reset", lr=lr, momentum=0.9))


def efficiency(data: Any, *, tau: int, overlap: str, plain: float, rounds: int
               ) -> dict[str, Any]:
    from sparknet.engine.trainer import train

    result = train(data, config=config(tau=tau, overlap=overlap, rounds=WARMUP_ROUNDS + rounds,
                                       eval_every=0, lr=0.01), progress=False)
    timed = result.metrics[WARMUP_ROUNDS:]
    round_s = statistics.median(r["round_seconds"] for r in timed)
    rate = 2 * tau * BATCH / round_s
    return {"tau": tau, "overlap": overlap, "round_ms": 1000 * round_s,
            "compute_ms": 1000 * statistics.median(r["compute_seconds"] for r in timed),
            "samples_per_s": rate, "efficiency": rate / (2 * plain)}


def jvm_warmup(data: Any, seconds: float) -> None:
    """Untimed rounds until the driver JVM has run ``seconds`` of them."""
    from sparknet.engine.trainer import train

    started = time.perf_counter()
    train(data, config=config(tau=10, overlap="decoupled", rounds=100_000, eval_every=0,
                              lr=0.01),
          progress=False, stop=lambda record: time.perf_counter() - started > seconds)


def time_to_target(data: Any, *, tau: int, overlap: str, lr: float, max_seconds: float
                   ) -> dict[str, Any]:
    from sparknet.engine.trainer import train

    eval_every = max(1, EVAL_SAMPLES // (2 * tau * BATCH))
    clock = {"started": None, "eval": 0.0, "hit": None}

    def stop(record: dict[str, Any]) -> bool:
        clock["eval"] += record.get("eval_seconds") or 0.0
        seconds = record["wall_seconds"] - clock["eval"]
        accuracy = record["test_accuracy"]
        if accuracy is not None and accuracy >= TARGET and clock["hit"] is None:
            clock["hit"] = {"seconds": seconds, "samples": record["samples"],
                            "round": record["round"], "accuracy": accuracy}
        return clock["hit"] is not None or seconds > max_seconds

    started = time.perf_counter()
    result = train(data, config=config(tau=tau, overlap=overlap, rounds=100_000,
                                       eval_every=eval_every, lr=lr), progress=False, stop=stop)
    hit = clock["hit"]
    return {"tau": tau, "overlap": overlap, "lr": lr, "eval_every_rounds": eval_every,
            "time_to_target_s": None if hit is None else hit["seconds"],
            "samples_to_target": None if hit is None else hit["samples"],
            "rounds": len(result.metrics),
            "final_accuracy": next((r["test_accuracy"] for r in reversed(result.metrics)
                                    if r["test_accuracy"] is not None), None),
            "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--max-seconds", type=float, default=400.0)
    parser.add_argument("--timed-rounds", type=int, default=12)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--jvm-warmup-seconds", type=float, default=90.0)
    args = parser.parse_args()

    from sparknet.data import fashion_mnist
    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.spark_session import get_or_create_session

    split = fashion_mnist.load_split("train")
    plain = loop_throughput(split.images, split.labels, threads=1, steps=300)
    pair = side_by_side(300)  # before Spark starts: two 1-thread loops at once
    spark = get_or_create_session("local[2]", app_name="sparknet-bench-overlap")
    data = fashion_mnist_data(spark, num_workers=2, seed=SEED)
    jvm_warmup(data, args.jvm_warmup_seconds)
    rows = []
    for tau in (50, 10):
        for overlap in MODES:
            rounds = args.timed_rounds * (50 // tau)
            rows.append(efficiency(data, tau=tau, overlap=overlap, plain=plain, rounds=rounds))
            rows[-1]["of_ceiling"] = rows[-1]["samples_per_s"] / sum(pair)
            print(rows[-1], flush=True)
    plain_after = loop_throughput(split.images, split.labels, threads=1, steps=300)
    accuracy = []
    if not args.skip_accuracy:
        for tau in (50, 10):
            for overlap in MODES:
                accuracy.append(time_to_target(data, tau=tau, overlap=overlap, lr=args.lr,
                                               max_seconds=args.max_seconds))
                print(accuracy[-1], flush=True)
    data.release()
    spark.stop()
    report = {"machine": machine(), "command": command(), "plain_1_thread": plain,
              "jvm_warmup_seconds": args.jvm_warmup_seconds,
              "side_by_side": pair,
              "plain_1_thread_after": plain_after, "efficiency": rows, "accuracy": accuracy}
    path = write_report("overlap", markdown(report), report)
    print(f"report: {path}")


def markdown(report: dict[str, Any]) -> str:
    name = {"off": "synchronous", "decoupled": "overlapped, decoupled",
            "eager": "overlapped, eager"}
    lines = [
        "# Overlapped rounds against synchronous rounds",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine_line()}; {report['machine']['date']}",
        "",
        "## Scaling efficiency, K = 2 on `local[2]`",
        "",
        "LeNet, batch 64, the full Fashion-MNIST training set, no evaluation; medians of the "
        f"timed rounds after {WARMUP_ROUNDS} warm-up rounds, and after "
        f"{report['jvm_warmup_seconds']:.0f} s of untimed rounds on the session (the driver "
        "JVM's JIT compiler). Efficiency = samples/s / (2 x a "
        "plain 1-thread PyTorch loop's samples/s, measured in this run: "
        f"{report['plain_1_thread']:.0f} before, {report['plain_1_thread_after']:.0f} after). "
        "The machine's own ceiling: two 1-thread loops run at once in two processes made "
        f"{sum(report['side_by_side']):.0f} samples/s together, "
        f"{sum(report['side_by_side']) / (2 * report['plain_1_thread']):.3f} of twice one "
        "loop alone; `of ceiling` = samples/s / that.",
        "",
        "| tau | rounds | round (ms) | slowest compute (ms) | samples/s | efficiency | "
        "of ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["efficiency"]:
        lines.append(f"| {r['tau']} | {name[r['overlap']]} | {r['round_ms']:.0f} | "
                     f"{r['compute_ms']:.0f} | {r['samples_per_s']:.0f} | "
                     f"**{r['efficiency']:.3f}** | {r['of_ceiling']:.3f} |")
    if report["accuracy"]:
        lines += [
            "", "## Time to 89% test accuracy", "",
            "LeNet, K = 2, outer average, SGD momentum 0.9, learning rate "
            f"{report['accuracy'][0]['lr']}, seed {SEED}; the full test set evaluated every "
            f"{EVAL_SAMPLES:,} training samples; clock = wall time since the first round minus "
            "the evaluation jobs' time.", "",
            "| tau | rounds | time to 89% (s) | samples to 89% | final accuracy |",
            "|---|---|---|---|---|",
        ]
        for r in report["accuracy"]:
            seconds = r["time_to_target_s"]
            lines.append(f"| {r['tau']} | {name[r['overlap']]} | "
                         f"{'not reached' if seconds is None else f'{seconds:.1f}'} | "
                         f"{r['samples_to_target'] or '-'} | "
                         f"{100 * (r['final_accuracy'] or 0):.2f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
