"""``sparknet simulate``: K virtual SparkNet workers in one process, exact accuracy per round.

The rounds run the Spark engine's own functions one worker after another, so the weights equal
a Spark run's with the same settings and seed; the wall time is modelled as
rounds * (tau * C + S) with C, the time of one local step, measured here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparknet.cli.train import add_setting_flags, config_from_args
from sparknet.data import fashion_mnist
from sparknet.errors import ConfigError


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate", help="run K virtual workers in one process (accuracy per round, "
        "modelled wall time)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="TOML file as for 'sparknet train'")
    parser.add_argument("--overhead", type=float, default=0.0, metavar="S",
                        help="modelled synchronisation overhead per round in seconds (0)")
    parser.add_argument("--data-dir", type=Path, default=fashion_mnist.DEFAULT_DIR,
                        help=f"Fashion-MNIST folder (default {fashion_mnist.DEFAULT_DIR})")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="use only the first N training examples")
    parser.add_argument("--test-limit", type=int, default=None,
                        help="evaluate on the first N test examples only")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the round records as JSON lines to this file")
    add_setting_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sparknet.data.shards import InputSpec
    from sparknet.models.registry import model_of
    from sparknet.simulate import simulate

    config, _ = config_from_args(args)
    if args.overhead < 0:
        raise ConfigError(f"--overhead={args.overhead} is invalid: use S >= 0 seconds")
    for name in ("train_limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={value} is invalid: use N >= 1")
    model_of(config).local_optimizer(config.optimizer)
    fashion_mnist.check_available(args.data_dir)
    train = fashion_mnist.load_split("train", args.data_dir)
    test = fashion_mnist.load_split("test", args.data_dir)
    result = simulate(
        (train.images[: args.train_limit], train.labels[: args.train_limit]), config=config,
        test=(test.images[: args.test_limit], test.labels[: args.test_limit]),
        spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
        overhead_seconds=args.overhead)
    step = result.step_seconds
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("".join(json.dumps(r) + "\n" for r in result.records))
    print(f"K={config.engine.num_workers} outer={config.outer.name} C={1000 * step:.1f} ms/step "
          f"S={args.overhead:g} s")
    print(f"{'round':>6} {'tau':>5} {'samples':>10} {'model s':>9} {'test acc':>9}")
    for r in result.curve():
        print(f"{r['round']:>6} {r['tau']:>5} {r['samples']:>10,} "
              f"{r['round'] * args.overhead + r['steps_per_worker'] * step:>9.1f} "
              f"{100 * r['test_accuracy']:>8.2f}%")
    return 0
