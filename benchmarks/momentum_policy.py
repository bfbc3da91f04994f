"""Which momentum policy should be the default? Test accuracy after the same rounds.

Trains LeNet on Fashion-MNIST with K = 2 on local[2] twice per outer optimizer, once with
``momentum_policy="reset"`` (every round starts from zero momentum; nothing extra is sent)
and once with ``"average"`` (momentum is averaged like the weights; twice the traffic), and
reports full-test-set accuracy at the same round numbers.

    .venv/bin/python benchmarks/momentum_policy.py [--rounds 30] [--outers average,nesterov]
"""

from __future__ import annotations

import argparse

from common import command, machine, write_report

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.sources import fashion_mnist_data
from sparknet.engine.spark_session import get_or_create_session
from sparknet.engine.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tau", type=int, default=50)
    parser.add_argument("--outers", default="average,nesterov")
    args = parser.parse_args()

    spark = get_or_create_session("local[2]", app_name="sparknet-bench-momentum")
    data = fashion_mnist_data(spark.sparkContext, num_workers=2, seed=0)
    rows = []
    for outer in args.outers.split(","):
        for policy in ("reset", "average"):
            config = TrainConfig(
                model="lenet", seed=0,
                engine=EngineConfig(num_workers=2, tau=args.tau, batch_size=64,
                                    rounds=args.rounds, eval_every=max(1, args.rounds // 6)),
                optimizer=OptimizerConfig(lr=0.01, momentum=0.9, momentum_policy=policy),
                outer=OuterConfig(name=outer))  # type: ignore[arg-type]
            result = train(data, config=config, progress=False)
            curve = [(r["round"], r["test_accuracy"]) for r in result.metrics
                     if r["test_accuracy"] is not None]
            rows.append({"outer": outer, "policy": policy, "curve": curve,
                         "bytes_per_worker": result.metrics[-1]["bytes_per_worker"]})
            print(outer, policy, curve[-1], flush=True)
    spark.stop()

    info = machine()
    rounds = [r for r, _ in rows[0]["curve"]]
    lines = ["# Momentum policy between rounds: reset vs average", "",
             f"Command: `{command()}`  ",
             f"Machine: {info['cpu']}, {info['cores']} cores; {info['date']}", "",
             f"LeNet, Fashion-MNIST (full test set), K = 2 on local[2], tau = {args.tau}, "
             "batch 64, local SGD lr 0.01 momentum 0.9, seed 0. Test accuracy (%) after round:",
             "", "| outer | momentum policy | bytes sent/worker/round | "
             + " | ".join(str(r) for r in rounds) + " |",
             "|---|---|---|" + "---|" * len(rounds)]
    for row in rows:
        lines.append(f"| {row['outer']} | {row['policy']} | {row['bytes_per_worker']:,} | "
                     + " | ".join(f"{100 * a:.2f}" for _, a in row["curve"]) + " |")
    write_report("momentum_policy", "\n".join(lines) + "\n",
                 {"machine": info, "command": command(), "rows": rows})


if __name__ == "__main__":
    main()
