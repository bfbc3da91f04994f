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

from sparknet.cli import caffe_db_input, image_input, mlflow_run, parquet_input
from sparknet.cli.run_settings import (
    DEFAULT_START_TIMEOUT,
    DataSource,
    RunSettings,
    absolute,
    check_limits,
    check_new_output,
    check_rows,
    check_run_table,
    check_writable,
    clear_run,
    default_master,
    positive_int,
    positive_seconds,
    save_run_file,
    saved_data_source,
)
from sparknet.config import TrainConfig, config_from_file, first_difference
from sparknet.data import fashion_mnist
from sparknet.engine.defaults import resolve_epoch_tau, resolve_momentum_policy, work_statement
from sparknet.engine.device import check_device
from sparknet.errors import ConfigError, DataError, SparknetError
from sparknet.models.kinds import ModelKind, network_outputs
from sparknet.models.objectives import resolve_objective
from sparknet.settings import train_settings


def tau_arg(text: str) -> int | str:
    """``--tau``: a number of steps, ``epoch`` or ``auto``."""
    if text in ("epoch", "auto"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of steps, 'epoch' or 'auto'") from None


_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "int_or_auto": tau_arg}
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "int_or_auto": "N|epoch|auto"}
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
                        "[outer] and [run] tables and top-level model/seed (flags override it)")
    parser.add_argument("--master", default=None,
                        help="Spark master URL (default local[K,4]: K threads, each failed "
                             "task tried up to 4 times)")
    parser.add_argument("--remote", default=None, metavar="sc://HOST:PORT",
                        help="train through a Spark Connect server instead of a master")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="Spark Connect only: a folder every executor can read, for the "
                             "round's state of networks too large to travel in the plan")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"Fashion-MNIST folder (default {fashion_mnist.DEFAULT_DIR})")
    parser.add_argument("--train-limit", type=positive_int, default=None, metavar="N",
                        help="use only the first N training examples (quick runs)")
    parser.add_argument("--test-limit", type=positive_int, default=None, metavar="N",
                        help="use only the first N test examples")
    parser.add_argument("--output", type=Path, default=None,
                        help="run directory for metrics, checkpoints and the result "
                             "(default runs/<model>-K<K>-tau<tau>)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the run in DIR from its latest checkpoint, with its saved "
                             "settings and data (only --rounds may change)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier run in --output (its checkpoints, metrics "
                             "and result are deleted once every check has passed); without "
                             "it an existing run's folder is refused")
    parser.add_argument("--replay-tau", type=Path, default=None, metavar="RUN_DIR",
                        help="replay the per-round tau decisions of an earlier run "
                             "(its final/state.json) to repeat it bit for bit")
    parser.add_argument("--start-timeout", type=positive_seconds, default=None, metavar="S",
                        help="seconds to wait for Spark to start and an executor to register "
                             f"(default {DEFAULT_START_TIMEOUT:.0f})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    mlflow_run.add_arguments(parser)
    parquet_input.add_arguments(parser)
    image_input.add_arguments(parser)
    add_setting_flags(parser)
    parser.set_defaults(handler=run)


def given_values(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings the TOML file and the flags give (flags win), and the file's [run] table."""
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
    snapshot = values.get("optimizer", {}).get("caffe_snapshot")
    if isinstance(snapshot, str) and snapshot:  # executors and resumed runs read it
        values["optimizer"]["caffe_snapshot"] = absolute(snapshot)
    # No data flag: a caffe: net whose Data layer names an existing database trains on it,
    # with the shape of its records and the layer's batch size (caffe_db_input).
    from_database = not any(getattr(args, name, None) is not None
                            for name in ("parquet", "images", "data_dir", "input_shape")) \
        and run_table.get("data_dir") is None
    if solver_file is not None:
        from sparknet.caffe.model_kind import apply_solver

        values = apply_solver(values, solver_file, input_shape=args.input_shape or (1, 28, 28),
                              from_database=from_database)
    elif from_database and isinstance(values.get("model"), str) and \
            values["model"].startswith("caffe:"):
        from sparknet.caffe.model_kind import data_layer_batch_size, with_database_shape

        shaped = with_database_shape(values["model"])
        if shaped != values["model"]:
            values["model"] = shaped
            batch = data_layer_batch_size(shaped)
            if batch and "batch_size" not in values.get("engine", {}):
                values.setdefault("engine", {})["batch_size"] = batch
    return values, run_table


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig from defaults < TOML < flags, and the file's [run] table."""
    values, run_table = given_values(args)
    return TrainConfig.from_dict(values), run_table


def read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder: give the TOML file itself")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check the --config path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text: give a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    run_table = check_run_table(data.pop("run", {}), str(path))
    return data, run_table


def run(args: argparse.Namespace) -> int:
    from sparknet.engine.run_dir import run_lock
    from sparknet.weights_dir import check_checkpoints_folder

    if args.resume is not None and args.overwrite:
        raise ConfigError("--resume and --overwrite are both given: continue the run or "
                          "replace it, not both")
    if args.resume is not None:
        config, model, settings = _resumed_run(args)
    else:
        config, model, settings = _new_run(args)
    data_source = settings.data
    check_limits(data_source, num_workers=config.engine.num_workers,
                 batch_size=config.engine.batch_size)
    model.local_optimizer(config.optimizer)
    if config.optimizer.caffe_snapshot is not None:
        from sparknet.engine.state import starting_state

        starting_state(model, config)  # the snapshot's weights and history fit the net
    classes: list[str] | None = None
    if data_source.kind == "images":
        classes, num_classes = image_input.check(data_source, model, config,
                                                 remote=args.remote)
    elif data_source.kind == "parquet":
        num_classes = parquet_input.check(data_source, model, config)
    elif data_source.kind == caffe_db_input.KIND:
        num_classes = caffe_db_input.check(data_source, model, config)
    else:
        sizes = fashion_mnist.check_available(data_source.path)
        check_rows(min(sizes["train"], data_source.train_limit or sizes["train"]),
                   num_workers=config.engine.num_workers, batch_size=config.engine.batch_size,
                   what=f"Fashion-MNIST in {data_source.path}")
        num_classes = fashion_mnist.NUM_CLASSES
        outputs = network_outputs(model, fashion_mnist.SHAPE, expected=num_classes)
        resolve_objective(config.objective).check_outputs(outputs, network=model.key)
    check_writable(settings.output)
    check_checkpoints_folder(settings.output)
    with run_lock(settings.output):
        if args.resume is None:
            check_new_output(settings.output, overwrite=args.overwrite)
        return _train(args, config, model, settings, classes, num_classes)


def _train(args: argparse.Namespace, config: TrainConfig, model: ModelKind,
           settings: RunSettings, classes: list[str] | None, num_classes: int) -> int:
    """The run, once its checks passed, with the run directory locked."""
    data_source = settings.data
    mlflow_run.check(settings)
    master = settings.master or default_master(config.engine.num_workers)
    check_device(config.engine.device, master)
    open_session = _session_opener(args, master, app_name=f"sparknet-{_slug(config.model)}",
                                   timeout=settings.start_timeout,
                                   log_file=settings.output / "spark.log",
                                   tasks=config.engine.num_workers)
    replayed = replayed_tau(args.replay_tau) if args.replay_tau is not None else None
    if args.resume is None:
        if args.overwrite:
            clear_run(settings.output)
        save_run_file(settings.output, data_source)

    spark = open_session()
    try:
        return _fit(spark, args, config, model, settings, classes, num_classes, replayed)
    except SparknetError:
        raise
    except Exception as exc:
        from sparknet.engine.tasks import server_lost

        lost = server_lost("training stopped", exc) if args.remote else None
        if lost is None:
            raise
        raise lost from None


def _fit(spark: Any, args: argparse.Namespace, config: TrainConfig, model: ModelKind,
         settings: RunSettings, classes: list[str] | None, num_classes: int,
         replayed: list[int] | None) -> int:
    """Places the data on ``spark`` and trains; a Spark Connect server lost on the way is
    one line (``_train``)."""
    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.trainer import train

    data_source = settings.data
    master = settings.master or default_master(config.engine.num_workers)
    if classes is not None:
        data = image_input.load(spark, data_source, config, num_classes, classes)
        image_input.save_classes(settings.output, classes)
    elif data_source.kind == "parquet":
        data = parquet_input.load(spark, data_source, config, num_classes, streamed=args.stream)
    elif data_source.kind == caffe_db_input.KIND:
        data = caffe_db_input.load(spark, data_source, config, num_classes, settings.output,
                                   streamed=args.stream)
    else:
        data = fashion_mnist_data(spark, num_workers=config.engine.num_workers,
                                  seed=config.seed, data_dir=data_source.path,
                                  train_limit=data_source.train_limit,
                                  test_limit=data_source.test_limit, streamed=args.stream,
                                  decode_threads=config.engine.decode_threads)
    config = resolve_momentum_policy(
        resolve_epoch_tau(config, data.train_sizes),
        has_momentum=model.local_optimizer(config.optimizer).has_momentum)
    print(f"training {work_statement(config, sum(data.train_sizes))}")
    tracker = mlflow_run.start(settings, config, master=args.remote or master)
    try:
        result = train(data, config=config, model=model, run_dir=settings.output,
                       resume=args.resume is not None, state_dir=args.state_dir,
                       progress=not args.no_progress, tau_decisions=replayed,
                       on_record=None if tracker is None else tracker.log_record)
    except BaseException:
        if tracker is not None:
            tracker.finish(failed=True)
        raise
    if tracker is not None:
        mlflow_run.finish(tracker, result, settings.output)
    final = result.metrics[-1]
    accuracy = result.final_accuracy
    print(f"done: {final['round']} rounds, {final['samples']:,} samples in "
          f"{final['wall_seconds']:.1f} s; test accuracy "
          f"{'n/a' if accuracy is None else f'{100 * accuracy:.2f}%'}; results in "
          f"{settings.output}")
    return 0


def _new_run(args: argparse.Namespace) -> tuple[TrainConfig, ModelKind, RunSettings]:
    from sparknet.models.registry import model_of

    config, table = config_from_args(args)
    output = args.output or Path(table.get("output") or
                                 f"runs/{_slug(config.model)}-K{config.engine.num_workers}"
                                 f"-tau{config.engine.tau}")
    uri, experiment = mlflow_run.given(args, table)
    return config, model_of(config), RunSettings(
        output=Path(output), master=args.master or table.get("master"),
        data=_data_source(args, table, config.model),
        start_timeout=args.start_timeout or table.get("start_timeout", DEFAULT_START_TIMEOUT),
        mlflow=uri, mlflow_experiment=experiment)


def _data_source(args: argparse.Namespace, table: dict[str, Any], model: str) -> DataSource:
    train_limit = _first(args.train_limit, table.get("train_limit"))
    test_limit = _first(args.test_limit, table.get("test_limit"))
    data_dir = _first(args.data_dir, table.get("data_dir"))
    if args.parquet is None and args.images is None and data_dir is None \
            and args.input_shape is None:
        database = caffe_db_input.data_source(model)
        if database is not None:
            if train_limit is not None or test_limit is not None:
                raise ConfigError("--train-limit and --test-limit apply to Fashion-MNIST, not "
                                  f"to the Caffe database {database.path}: use sparknet caffe "
                                  "to-parquet --limit N, then --parquet")
            return database
    if args.parquet is not None or args.images is not None:
        if train_limit is not None or test_limit is not None:
            raise ConfigError("--train-limit and --test-limit apply to Fashion-MNIST, not to "
                              "--parquet or --images: filter the data instead")
        if args.parquet is not None and args.images is not None:
            raise ConfigError("--images and --parquet are both given: train on one of them")
    if args.images is not None:
        return DataSource(kind="images", path=absolute(args.images),
                          columns=image_input.columns(args))
    if args.parquet is not None:
        return DataSource(kind="parquet", path=absolute(args.parquet),
                          columns=parquet_input.columns(args))
    data_dir = _first(data_dir, fashion_mnist.DEFAULT_DIR)
    return DataSource(kind="fashion-mnist", path=absolute(data_dir), train_limit=train_limit,
                      test_limit=test_limit)


def _resumed_run(args: argparse.Namespace) -> tuple[TrainConfig, ModelKind, RunSettings]:
    """The saved configuration and data hold; a flag that changes them is refused by name.

    Only --rounds may change (to extend a run); the master, the progress bar and timeouts are
    not part of the run and may differ.
    """
    from sparknet.engine.run_dir import check_resumable
    from sparknet.models.registry import check_file_references, resolve_saved_model

    run_dir = Path(args.resume)
    saved_file = run_dir / "config.json"
    if not saved_file.is_file():
        raise ConfigError(f"cannot resume: {saved_file} does not exist; give the run directory "
                          "of an earlier 'sparknet train'")
    try:
        saved_values = json.loads(saved_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise DataError(f"{saved_file} cannot be read ({exc}): the run directory is corrupt"
                        ) from None
    saved = config_from_file(saved_values, origin=str(saved_file))
    given, table = given_values(args)
    check_file_references(saved, origin=str(saved_file), given=_dotted(given))
    rounds = given.get("engine", {}).pop("rounds", None)
    changed = first_difference(saved.to_dict(), TrainConfig.from_dict(
        _overlay(saved.to_dict(), given)).to_dict())
    if changed is not None:
        raise ConfigError(f"--resume: {changed} differs from the run's saved value in "
                          f"{saved_file}; a resumed run keeps its settings (only --rounds may "
                          "change)")
    if rounds is not None:
        saved = TrainConfig.from_dict(_overlay(saved.to_dict(), {"engine": {"rounds": rounds}}))
    data = saved_data_source(run_dir)
    _check_same_data(data, _data_source_given(args, table))
    for name, value in (("--output", args.output or table.get("output")),):
        if value is not None and Path(value).resolve() != run_dir.resolve():
            raise ConfigError(f"{name} {value} is not the resumed run {run_dir}: drop {name}")
    model = resolve_saved_model(saved.model, origin=str(saved_file), given=given.get("model"),
                                args=saved.model_args,
                                fix=f"pass it again: --resume {run_dir} --model {saved.model}")
    check_resumable(run_dir, saved, model)
    uri, experiment = mlflow_run.given(args, table)
    uri, run_id = mlflow_run.resumed(run_dir, uri)
    return saved, model, RunSettings(
        output=run_dir, master=args.master or table.get("master"), data=data,
        start_timeout=args.start_timeout or table.get("start_timeout", DEFAULT_START_TIMEOUT),
        mlflow=uri, mlflow_experiment=experiment, mlflow_run_id=run_id)


def _data_source_given(args: argparse.Namespace, table: dict[str, Any]) -> dict[str, Any]:
    """The data settings named on this command line or in its [run] table (not defaults)."""
    given = {"train_limit": _first(args.train_limit, table.get("train_limit")),
             "test_limit": _first(args.test_limit, table.get("test_limit"))}
    data_dir = _first(args.data_dir, table.get("data_dir"))
    if data_dir is not None:
        given["path"] = absolute(data_dir)
    if args.parquet is not None:
        given["path"] = absolute(args.parquet)
    if args.images is not None:
        given["path"] = absolute(args.images)
    given["columns"] = {**parquet_input.given_columns(args), **image_input.given_columns(args)}
    return {k: v for k, v in given.items() if v not in (None, {})}


def _check_same_data(saved: DataSource, given: dict[str, Any]) -> None:
    flags = {"path": {"parquet": "--parquet", "images": "--images"}.get(saved.kind, "--data-dir"),
             "train_limit": "--train-limit", "test_limit": "--test-limit"}
    pairs = [(flags[key], getattr(saved, key), value) for key, value in given.items()
             if key != "columns"]
    pairs += [(f"--{key.replace('_', '-')}", saved.columns.get(key), value)
              for key, value in given.get("columns", {}).items()]
    for flag, current, value in pairs:
        if current != value:
            raise ConfigError(f"--resume: {flag} {value} differs from the run's {current} "
                              "(its run.json); a resumed run trains on the same data")


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"engine": {"tau": 5}}`` -> ``{"engine.tau": 5}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = (_overlay(base[key], value) if isinstance(value, dict) and
                       isinstance(base.get(key), dict) else value)
    return merged


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _session_opener(args: argparse.Namespace, master: str, *, app_name: str,
                    timeout: float, log_file: Path, tasks: int) -> Any:
    """Checks the master or the Spark Connect URL now; opens the session when called."""
    from sparknet.engine.spark_session import (
        check_master,
        check_remote,
        remote_session,
        start_session,
    )

    if args.remote is None:
        check_master(master)
        return lambda: start_session(master, app_name=app_name, timeout=timeout,
                                     log_file=log_file, tasks=tasks)
    if args.master is not None:
        raise ConfigError("--master and --remote are both given: a run uses a master or a "
                          "Spark Connect server; drop one")
    check_remote(args.remote)
    return lambda: remote_session(args.remote, app_name=app_name, timeout=timeout)


def replayed_tau(run_dir: Path) -> list[int]:
    """The per-round tau an earlier run recorded in ``RUN_DIR/final/state.json``."""
    state = Path(run_dir) / "final" / "state.json"
    if not state.is_file():
        raise ConfigError(f"--replay-tau: {state} does not exist; give the directory of a "
                          "finished 'sparknet train' run")
    try:
        record = json.loads(state.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--replay-tau: {state} cannot be read as JSON ({exc}): give the "
                          "directory of a finished 'sparknet train' run") from None
    decisions = record.get("tau_decisions") if isinstance(record, dict) else None
    if not isinstance(decisions, list) or not all(
            isinstance(t, int) and t >= 1 for t in decisions):
        raise ConfigError(f"--replay-tau: {state} holds no valid tau_decisions list")
    return decisions


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:40]
