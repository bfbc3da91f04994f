"""Do the defaults need tuning? A default SparkNetEstimator fit against a plain PyTorch loop at
equal samples, on three datasets the project never tuned on, three seeds each.

The fit sets only what the data needs (the network, its arguments, the input shape) and
``seed``; every other Param keeps its default (tau = "epoch", Nesterov outer step, averaged
momentum, 20 rounds, K = 2, SGD lr 0.01 momentum 0.9, batch 64). ``--momentum-policy reset``
changes that one default, to show what averaged momentum buys.

The plain loop starts from the same initial weights (sparknet's ``initial_state`` for the
seed), runs torch.optim.SGD with the same lr, momentum and batch size over seeded epoch
shuffles of all training rows, and stops after as many samples as the fit processed. Test
accuracy is top-1 on each dataset's held-out split.

    .venv/bin/python benchmarks/defaults.py [--datasets digits,letters,satellite] [--seeds 3]
        [--momentum-policy reset]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, machine_line, write_report  # noqa: E402
from unseen_data import DATASETS, Dataset, accuracy  # noqa: E402

from sparknet.engine.state import initial_state  # noqa: E402
from sparknet.flat import load_flat_state  # noqa: E402
from sparknet.models.registry import resolve_model  # noqa: E402


def plain_loop(data: Dataset, *, seed: int, samples: int, lr: float, momentum: float,
               batch_size: int) -> float:
    """Test accuracy of torch.optim.SGD after ``samples`` training samples."""
    torch.set_num_threads(1)
    kind = resolve_model(data.network, args=json.dumps(data.network_args))
    layout, floats, ints = initial_state(kind, seed)
    model = kind.build()
    load_flat_state(model, layout, floats, ints)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    x, y = torch.from_numpy(data.train[0]), torch.from_numpy(data.train[1])
    generator = torch.Generator().manual_seed(seed)
    done = 0
    model.train()
    while done < samples:
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y) - batch_size + 1, batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += batch_size
            if done >= samples:
                break
    return accuracy(model, data.test)


def default_fit(spark: Any, data: Dataset, *, seed: int,
                changed: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Test accuracy of a default fit, and what it did (tau, rounds, samples, seconds)."""
    import pandas as pd
    from pyspark.ml.functions import array_to_vector

    from sparknet.ml import SparkNetEstimator

    rows = pd.DataFrame({"features": list(data.train[0].reshape(len(data.train[1]), -1)),
                         "label": data.train[1].astype(np.float64)})
    df = spark.createDataFrame(rows).select(array_to_vector("features").alias("features"),
                                            "label")
    estimator = SparkNetEstimator(network=data.network, networkArgs=data.network_args,
                                  inputShape=list(data.shape), seed=seed, progress="off",
                                  **changed)
    started = time.perf_counter()
    model = estimator.fit(df)
    seconds = time.perf_counter() - started
    result = estimator.last_result
    net = model.saved_network
    torch_model = resolve_model(net.network, args=net.network_args).build()
    load_flat_state(torch_model, net.layout, net.floats, net.ints)
    engine = result.config.engine
    return accuracy(torch_model, data.test), {
        "tau": engine.tau, "rounds": engine.rounds, "num_workers": engine.num_workers,
        "samples": result.metrics[-1]["samples"], "seconds": seconds,
        "outer": result.config.outer.name, "lr": result.config.optimizer.lr,
        "momentum": result.config.optimizer.momentum, "batch_size": engine.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,letters,satellite")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--momentum-policy", choices=("reset", "average"), default=None)
    args = parser.parse_args()
    changed = {} if args.momentum_policy is None else {"momentumPolicy": args.momentum_policy}

    from sparknet.engine.spark_session import get_or_create_session

    spark = get_or_create_session("local[2]", app_name="sparknet-defaults")
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        data = DATASETS[name]()
        for seed in range(args.seeds):
            fit_accuracy, fit = default_fit(spark, data, seed=seed, changed=changed)
            plain = plain_loop(data, seed=seed, samples=fit["samples"], lr=fit["lr"],
                               momentum=fit["momentum"], batch_size=fit["batch_size"])
            rows.append({"dataset": name, "seed": seed, "train_rows": len(data.train[1]),
                         "test_rows": len(data.test[1]), "sparknet": fit_accuracy,
                         "plain": plain, **fit})
            print(f"{name} seed {seed}: default fit {100 * fit_accuracy:.2f}% (tau "
                  f"{fit['tau']}, {fit['samples']:,} samples, {fit['seconds']:.1f} s), plain "
                  f"loop {100 * plain:.2f}%", flush=True)
    spark.stop()
    name = "defaults" if not changed else f"defaults-momentum-{args.momentum_policy}"
    write_report(name, report(rows, changed), {"rows": rows, "command": command()})


def report(rows: list[dict[str, Any]], changed: dict[str, Any]) -> str:
    lines = [
        "# Defaults that need no tuning", "",
        f"`{command()}` on {machine_line()}; Spark `local[2]`.", "",
        "A `SparkNetEstimator` fit with every Param at its default except the network, its "
        "arguments, the input shape and the seed (so tau = \"epoch\", a Nesterov outer step "
        "(lr 0.7, momentum 0.9), averaged momentum, 20 rounds, K = 2, SGD lr 0.01 momentum "
        "0.9, batch 64)" + (f", except {changed}" if changed else "") + ", "
        "against a plain PyTorch SGD loop from the same initial weights with the same lr, "
        "momentum and batch size over all training rows, stopped at the same number of "
        "samples. Datasets never used to tune sparknet (`benchmarks/unseen_data.py`): "
        "scikit-learn's 8x8 digits (small CNN), UCI Letter Recognition and Statlog Landsat "
        "Satellite (MLP 128-128, standardised features), the UCI sets from Debian's "
        "r-cran-mlbench.", "",
        "| dataset | train / test rows | tau | samples (epochs) | seed | default fit | plain "
        "loop | difference |",
        "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['train_rows']:,} / {r['test_rows']:,} | {r['tau']} | "
            f"{r['samples']:,} ({r['samples'] / r['train_rows']:.1f}) | {r['seed']} | "
            f"{100 * r['sparknet']:.2f}% | {100 * r['plain']:.2f}% | "
            f"{100 * (r['sparknet'] - r['plain']):+.2f} |")
    lines += ["", "Means over the seeds (points; the target: the default fit no more than "
              "0.5 below the plain loop):", "",
              "| dataset | default fit | plain loop | difference | within 0.5 |",
              "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        fit = 100 * float(np.mean([r["sparknet"] for r in mine]))
        plain = 100 * float(np.mean([r["plain"] for r in mine]))
        lines.append(f"| {name} | {fit:.2f}% | {plain:.2f}% | {fit - plain:+.2f} | "
                     f"{'yes' if fit - plain >= -0.5 else 'NO'} |")
    lines += ["", "Each default fit's tau comes from the row count alone (one pass over each "
              "worker's shard, at most 100 steps), so rerunning this on any machine, under any "
              "load, gives the same fits (`tests/ml/test_ml_defaults.py` checks a default fit "
              "under load bit for bit)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
