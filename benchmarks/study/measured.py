"""Measured, not simulated: speedup of real ``local[2]`` runs for K in {1, 2}, for the study plots.

The study's configuration (LeNet in Caffe's layout, Fashion-MNIST, batch 64 per worker, SGD lr
0.01 momentum 0.9) runs on Spark ``local[2]`` for each outer optimizer, K and tau until 89% on
the full test set; the plain 1-thread PyTorch loop with the same rate is the serial reference.
Speedup to a target = the loop's training time to it / sparknet's (evaluation and sparknet's
one-off warm-up job excluded). Each point also records its measured per-round overhead S
(round wall time - slowest worker's compute), which is where ``plots.py`` draws it on the
S axis.

    .venv/bin/python benchmarks/study/measured.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import head_to_head as h2h  # noqa: E402
from baseline import BATCH, SEED  # noqa: E402
from common import machine  # noqa: E402

RESULTS = HERE.parent / "results" / "study"
TARGETS = (0.85, 0.89)


def time_to(curve: list[dict[str, Any]], target: float) -> float | None:
    hit = next((p for p in curve if p["test_accuracy"] >= target), None)
    return None if hit is None else float(hit["seconds"])


def sparknet_point(*, k_shards: dict[int, Any], k: int, tau: int, outer: str,
                   lr: float, max_samples: int) -> dict[str, Any]:
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.engine.trainer import train

    eval_every = max(1, round(6400 / (k * tau * BATCH)))
    config = TrainConfig(model="lenet", seed=SEED,
                         engine=EngineConfig(num_workers=k, tau=tau, batch_size=BATCH,
                                             rounds=-(-max_samples // (k * tau * BATCH)),
                                             eval_every=eval_every),
                         optimizer=OptimizerConfig(momentum_policy="reset", lr=lr, momentum=0.9),
                         outer=OuterConfig(name=outer))
    result = train(k_shards[k], config=config, progress=False,
                   stop=lambda r: (r["test_accuracy"] or 0) >= max(TARGETS))
    curve = h2h.clock_curve(result.metrics)
    overheads = [r["overhead_seconds"] for r in result.metrics]
    return {"k": k, "tau": tau, "outer": outer, "lr": lr, "curve": curve,
            "warmup_seconds": result.warmup_seconds,
            "overhead_s": statistics.median(overheads) if overheads else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="1,2")
    parser.add_argument("--taus", default="50,200")
    parser.add_argument("--outers", default="average,nesterov")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--max-samples", type=int, default=400_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "measured.json")
    args = parser.parse_args(argv)

    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.spark_session import get_or_create_session

    spark = get_or_create_session("local[2]", app_name="sparknet-study-measured")
    ks = [int(k) for k in args.ks.split(",")]
    k_shards = {k: fashion_mnist_data(spark.sparkContext, num_workers=k, seed=SEED)
                for k in ks}
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(
        [Path(sys.executable).name, *sys.argv]), "lr": args.lr, "points": []}
    data = h2h.fashion()
    limits = h2h.Limits(interval=6400, max_samples=args.max_samples, max_seconds=1e9,
                        target=max(TARGETS))
    report["serial"] = h2h.plain_loop(data, lr=args.lr, threads=1, limits=limits)["curve"]
    for outer in args.outers.split(","):
        for k in ks:
            for tau in (int(t) for t in args.taus.split(",")):
                run = sparknet_point(k_shards=k_shards, k=k, tau=tau, outer=outer,
                                     lr=args.lr, max_samples=args.max_samples)
                for target in TARGETS:
                    serial, mine = time_to(report["serial"], target), time_to(run["curve"],
                                                                              target)
                    run[f"speedup_{round(100 * target)}"] = (
                        serial / mine if serial is not None and mine else None)
                report["points"].append(run)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=1))
                print(f"[{time.strftime('%H:%M:%S')}] {outer} K={k} tau={tau}: speedup 85% "
                      f"{run['speedup_85']}, 89% {run['speedup_89']}, S {run['overhead_s']}",
                      flush=True)
    for shards in k_shards.values():
        shards.release()
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
