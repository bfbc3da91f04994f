"""``sparknet train``: SparkNet's parallel SGD on Fashion-MNIST (or another source).

Settings come from defaults, then a TOML file (``--config``), then flags. The whole
configuration is validated, and the data and master checked, before any Spark job starts.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparknet.cli import parquet_input
from sparknet.config import TrainConfig
from sparknet.data import fashion_mnist
from sparknet.errors import ConfigError


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one configuration field (``section`` None: top level)."""

    name: str
    section: str | None
    key: str
    type: Any
    help: str
    choices: tuple[str, ...] | None = None


def tau_arg(text: str) -> int | str:
    """``--tau``: a number of steps or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of steps or 'auto'") from None


FLAGS = (
    Flag("--model", None, "model", str,
         "network: lenet, cnn, package.module:function, or caffe:NET.prototxt"),
    Flag("--seed", None, "seed", int, "seed of weights, data order and dropout (default 0)"),
    Flag("--checkpoint-every", None, "checkpoint_every", int,
         "write a checkpoint every N rounds; 0: only at the end (default 10)"),
    Flag("--num-workers", "engine", "num_workers", int, "K, workers trained in parallel (2)"),
    Flag("--tau", "engine", "tau", tau_arg,
         "local SGD steps per worker per round, or auto: keep overhead <= 5%% (auto)"),
    Flag("--batch-size", "engine", "batch_size", int, "mini-batch size of a local step (64)"),
    Flag("--rounds", "engine", "rounds", int, "number of rounds (20)"),
    Flag("--eval-every", "engine", "eval_every", int,
         "evaluate on the test set every N rounds; 0: at the end only (5)"),
    Flag("--device", "engine", "device", str, "where workers train (cpu)",
         ("cpu", "cuda", "auto")),
    Flag("--threads-per-worker", "engine", "threads_per_worker", int,
         "PyTorch threads per worker (1)"),
    Flag("--on-non-finite", "engine", "on_non_finite", str,
         "a NaN/inf loss stops training or its update is skipped (stop)", ("stop", "skip")),
    Flag("--optimizer", "optimizer", "name", str, "local optimizer (sgd)", ("sgd", "adam")),
    Flag("--lr", "optimizer", "lr", float, "local learning rate (0.01)"),
    Flag("--momentum", "optimizer", "momentum", float, "local SGD momentum (0.9)"),
    Flag("--weight-decay", "optimizer", "weight_decay", float, "L2 weight decay (0)"),
    Flag("--momentum-policy", "optimizer", "momentum_policy", str,
         "workers' momentum between rounds: reset or average (reset)", ("reset", "average")),
    Flag("--outer", "outer", "name", str, "outer optimizer on the driver (average)",
         ("average", "weighted", "nesterov")),
    Flag("--outer-lr", "outer", "lr", float, "outer learning rate, nesterov only (0.7)"),
    Flag("--outer-momentum", "outer", "momentum", float, "outer momentum, nesterov only (0.9)"),
    Flag("--compression", "outer", "compression", str,
         "encoding of the changes workers send back (none)", ("none", "bf16", "int8")),
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "train", help="train a network with SparkNet's parallel SGD",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="TOML file with [engine], [optimizer], "
                        "[outer] tables and top-level model/seed (flags override it)")
    parser.add_argument("--master", default=None,
                        help="Spark master URL (default local[K] with K = --num-workers)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"Fashion-MNIST folder (default {fashion_mnist.DEFAULT_DIR})")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="use only the first N training examples (quick runs)")
    parser.add_argument("--test-limit", type=int, default=None,
                        help="use only the first N test examples")
    parser.add_argument("--output", type=Path, default=None,
                        help="run directory for metrics, checkpoints and the result "
                             "(default runs/<model>-K<K>-tau<tau>)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the run in DIR from its latest checkpoint")
    parser.add_argument("--replay-tau", type=Path, default=None, metavar="RUN_DIR",
                        help="replay the per-round tau decisions of an earlier run "
                             "(its final/state.json) to repeat it bit for bit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--caffe-solver", type=Path, default=None, metavar="SOLVER",
                        help="train the Caffe net of this solver .prototxt with its solver "
                             "(see docs/caffe.md for how max_iter, test_interval, snapshot "
                             "map to rounds); --model caffe:NET.prototxt overrides its net")
    parquet_input.add_arguments(parser)
    for flag in FLAGS:
        parser.add_argument(flag.name, dest=f"set_{flag.key}_{flag.section}", type=flag.type,
                            choices=flag.choices, default=None, help=flag.help)
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig from defaults < TOML < flags, and the file's [run] table."""
    values: dict[str, Any] = {}
    run_table: dict[str, Any] = {}
    if args.config is not None:
        values, run_table = read_toml(args.config)
    for flag in FLAGS:
        value = getattr(args, f"set_{flag.key}_{flag.section}")
        if value is None:
            continue
        target = values if flag.section is None else values.setdefault(flag.section, {})
        target[flag.key] = value
    if getattr(args, "caffe_solver", None) is not None:
        from sparknet.models.caffe_ref import apply_solver

        values = apply_solver(values, args.caffe_solver, input_shape=args.input_shape)
    return TrainConfig.from_dict(values), run_table


def read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check the --config path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    run_table = data.pop("run", {})
    return data, run_table


def run(args: argparse.Namespace) -> int:
    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.spark_session import check_master, get_or_create_session
    from sparknet.engine.trainer import train
    from sparknet.models.registry import model_source

    if args.resume is not None:
        output = Path(args.resume)
        config, run_table = _saved_config(output, args), dict[str, Any]()
    else:
        config, run_table = config_from_args(args)
        output = args.output or Path(run_table.get("output") or
                                     f"runs/{_slug(config.model)}-K{config.engine.num_workers}"
                                     f"-tau{config.engine.tau}")
    data_dir = args.data_dir or Path(run_table.get("data_dir", fashion_mnist.DEFAULT_DIR))
    master = args.master or run_table.get("master") or f"local[{config.engine.num_workers}]"
    train_limit = args.train_limit or run_table.get("train_limit")
    test_limit = args.test_limit or run_table.get("test_limit")

    # Validate everything cheap before Spark starts.
    model_source(config.model)
    num_classes = parquet_input.check(args, config) if args.parquet is not None else 0
    if args.parquet is None:
        fashion_mnist.check_available(data_dir)
    check_master(master)
    replayed = replayed_tau(args.replay_tau) if args.replay_tau is not None else None

    spark = get_or_create_session(master, app_name=f"sparknet-{_slug(config.model)}")
    if args.parquet is not None:
        data = parquet_input.load(spark, args, config, num_classes)
    else:
        data = fashion_mnist_data(spark.sparkContext, num_workers=config.engine.num_workers,
                                  seed=config.seed, data_dir=data_dir, train_limit=train_limit,
                                  test_limit=test_limit)
    if config.model.startswith("caffe:"):  # the Data layer's transform_param replaces scale
        from dataclasses import replace

        from sparknet.models.caffe_ref import input_spec_for

        data = replace(data, spec=input_spec_for(config.model, data.spec))
    result = train(data, config=config, run_dir=output, resume=args.resume is not None,
                   progress=not args.no_progress, tau_decisions=replayed)
    final = result.metrics[-1]
    accuracy = result.final_accuracy
    print(f"done: {final['round']} rounds, {final['samples']:,} samples in "
          f"{final['wall_seconds']:.1f} s; test accuracy "
          f"{'n/a' if accuracy is None else f'{100 * accuracy:.2f}%'}; results in {output}")
    return 0


def _saved_config(run_dir: Path, args: argparse.Namespace) -> TrainConfig:
    """On resume the saved configuration holds; only --rounds may extend it."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise ConfigError(f"cannot resume: {saved} does not exist; give the run directory "
                          "of an earlier 'sparknet train'")
    values = json.loads(saved.read_text())
    rounds = args.set_rounds_engine
    if rounds is not None:
        values["engine"]["rounds"] = rounds
    return TrainConfig.from_dict(values)


def replayed_tau(run_dir: Path) -> list[int]:
    """The per-round tau an earlier run recorded in ``RUN_DIR/final/state.json``."""
    state = Path(run_dir) / "final" / "state.json"
    if not state.is_file():
        raise ConfigError(f"--replay-tau: {state} does not exist; give the directory of a "
                          "finished 'sparknet train' run")
    decisions = json.loads(state.read_text()).get("tau_decisions")
    if not isinstance(decisions, list) or not all(
            isinstance(t, int) and t >= 1 for t in decisions):
        raise ConfigError(f"--replay-tau: {state} holds no valid tau_decisions list")
    return decisions


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:40]
