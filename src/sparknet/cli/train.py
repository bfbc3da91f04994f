"""``sparknet train``: SparkNet's parallel SGD on Fashion-MNIST (or another source).

Settings come from defaults, then a TOML file (``--config``), then flags. The whole
configuration is validated, and the data and master checked, before any Spark job starts.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from sparknet.cli import image_input, parquet_input
from sparknet.config import TrainConfig
from sparknet.data import fashion_mnist
from sparknet.errors import ConfigError
from sparknet.settings import train_settings


def tau_arg(text: str) -> int | str:
    """``--tau``: a number of steps or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of steps or 'auto'") from None


_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "int_or_auto": tau_arg}
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "int_or_auto": "N|auto"}
# A flag whose value is a file: the plug-in that reads it fills the setting (see run()).
_FILE_FLAGS = {"optimizer.caffe_solver": Path}


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per configuration field, with the field's doc and default as help."""
    group = parser.add_argument_group("training settings (each also a TOML key)")
    for s in train_settings():
        help_text = s.help().replace("%", "%%")
        dest = f"setting:{s.dotted}"
        if s.kind == "bool":
            group.add_argument(s.flag, dest=dest, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
            continue
        group.add_argument(s.flag, dest=dest, type=_FILE_FLAGS.get(s.dotted, _TYPES[s.kind]),
                           choices=s.choices, default=None, help=help_text,
                           metavar=None if s.choices else s.metavar or _METAVARS[s.kind])


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "train", help="train a network with SparkNet's parallel SGD",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="TOML file with [engine], [optimizer], "
                        "[outer] tables and top-level model/seed (flags override it)")
    parser.add_argument("--master", default=None,
                        help="Spark master URL (default local[K] with K = --num-workers)")
    parser.add_argument("--remote", default=None, metavar="sc://HOST:PORT",
                        help="train through a Spark Connect server instead of a master")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="Spark Connect only: a folder every executor can read, for the "
                             "round's state of networks too large to travel in the plan")
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
    parquet_input.add_arguments(parser)
    image_input.add_arguments(parser)
    add_setting_flags(parser)
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig from defaults < TOML < flags, and the file's [run] table."""
    values: dict[str, Any] = {}
    run_table: dict[str, Any] = {}
    if args.config is not None:
        values, run_table = read_toml(args.config)
    solver_file = None
    for s in train_settings():
        value = getattr(args, f"setting:{s.dotted}", None)
        if value is None:
            continue
        if s.dotted in _FILE_FLAGS:
            solver_file = value
            continue
        target = values
        for part in s.path[:-1]:
            target = target.setdefault(part, {})
        target[s.path[-1]] = value
    if solver_file is not None:
        from sparknet.caffe.model_kind import apply_solver

        values = apply_solver(values, solver_file,
                              input_shape=getattr(args, "input_shape", (1, 28, 28)))
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
    from sparknet.engine.trainer import train
    from sparknet.models.registry import resolve_model

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
    resolve_model(config.model).local_optimizer(config.optimizer)
    num_classes = parquet_input.check(args, config) if args.parquet is not None else 0
    classes: list[str] | None = None
    if args.images is not None:
        classes, num_classes = image_input.check(args, config)
    elif args.parquet is None:
        fashion_mnist.check_available(data_dir)
    open_session = _session_opener(args, master, app_name=f"sparknet-{_slug(config.model)}")
    replayed = replayed_tau(args.replay_tau) if args.replay_tau is not None else None

    spark = open_session()
    if classes is not None:
        data = image_input.load(spark, args, config, num_classes)
        image_input.save_classes(output, classes)
    elif args.parquet is not None:
        data = parquet_input.load(spark, args, config, num_classes)
    else:
        data = fashion_mnist_data(spark, num_workers=config.engine.num_workers,
                                  seed=config.seed, data_dir=data_dir, train_limit=train_limit,
                                  test_limit=test_limit, streamed=args.stream,
                                  decode_threads=config.engine.decode_threads)
    result = train(data, config=config, run_dir=output, resume=args.resume is not None,
                   state_dir=args.state_dir,
                   progress=not args.no_progress, tau_decisions=replayed)
    final = result.metrics[-1]
    accuracy = result.final_accuracy
    print(f"done: {final['round']} rounds, {final['samples']:,} samples in "
          f"{final['wall_seconds']:.1f} s; test accuracy "
          f"{'n/a' if accuracy is None else f'{100 * accuracy:.2f}%'}; results in {output}")
    return 0


def _session_opener(args: argparse.Namespace, master: str, *, app_name: str) -> Any:
    """Checks the master or the Spark Connect URL now; opens the session when called."""
    from sparknet.engine.spark_session import (
        check_master,
        check_remote,
        get_or_create_session,
        remote_session,
    )

    if args.remote is None:
        check_master(master)
        return lambda: get_or_create_session(master, app_name=app_name)
    if args.master is not None:
        raise ConfigError("--master and --remote are both given: a run uses a master or a "
                          "Spark Connect server; drop one")
    check_remote(args.remote)
    return lambda: remote_session(args.remote, app_name=app_name)


def _saved_config(run_dir: Path, args: argparse.Namespace) -> TrainConfig:
    """On resume the saved configuration holds; only --rounds may extend it."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise ConfigError(f"cannot resume: {saved} does not exist; give the run directory "
                          "of an earlier 'sparknet train'")
    values = json.loads(saved.read_text())
    rounds = getattr(args, "setting:engine.rounds")
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
