"""``sparknet train --parquet PATH``: train on a Parquet dataset instead of Fashion-MNIST.

The features column may hold ML vectors, numeric arrays, PNG/JPEG bytes or image structs; the
label column what the objective needs: class indices, 0/1, 0/1 vectors or real targets (see
``sparknet.models.objectives``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparknet.cli.run_settings import check_rows
from sparknet.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sparknet.cli.run_settings import DataSource
    from sparknet.config import TrainConfig
    from sparknet.data.placement import SparkData
    from sparknet.models.kinds import ModelKind


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("Parquet input (instead of Fashion-MNIST)")
    group.add_argument("--parquet", type=Path, default=None, metavar="PATH",
                       help="train on this Parquet file or folder")
    group.add_argument("--features", default=None, metavar="COL",
                       help="features column of --parquet (default features)")
    group.add_argument("--label", default=None, metavar="COL",
                       help="label column of --parquet (default label)")
    group.add_argument("--weight", default=None, metavar="COL",
                       help="column of row weights (numbers >= 0): each batch's loss is the "
                            "weighted mean of its rows' losses (default: every row weighs 1)")
    group.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                       help="shape of one example as network input (default 1,28,28)")
    group.add_argument("--num-classes", type=int, default=None, metavar="N",
                       help="number of classes (default: the network's number of outputs)")


DEFAULT_COLUMNS: dict[str, Any] = {"features": "features", "label": "label",
                                   "input_shape": [1, 28, 28], "num_classes": None,
                                   "weight": None}


def given_columns(args: argparse.Namespace) -> dict[str, Any]:
    """The Parquet options named on the command line (a resumed run compares them)."""
    given = {key: getattr(args, key) for key in DEFAULT_COLUMNS
             if getattr(args, key) is not None}
    if "input_shape" in given:
        given["input_shape"] = list(given["input_shape"])
    return given


def columns(args: argparse.Namespace) -> dict[str, Any]:
    """Every Parquet option, defaults filled in: saved with the run (plain JSON)."""
    return {**DEFAULT_COLUMNS, **given_columns(args)}


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,28,28") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape of positive dims")
    return shape


def check(source: DataSource, model: ModelKind, config: TrainConfig) -> int:
    """Cheap checks before Spark starts; returns the network's number of outputs."""
    from sparknet.models.kinds import network_outputs
    from sparknet.models.objectives import resolve_objective

    if not Path(source.path).exists():
        raise ConfigError(f"--parquet {source.path} does not exist: give a Parquet file or "
                          "folder")
    rows = check_files(Path(source.path))
    check_rows(rows, num_workers=config.engine.num_workers,
               batch_size=config.engine.batch_size, what=f"--parquet {source.path}")
    outputs = network_outputs(model, tuple(source.columns["input_shape"]))
    objective = resolve_objective(config.objective)
    objective.check_outputs(outputs, network=model.key)
    if source.columns.get("weight") is not None:
        objective.check_row_weights()
    wanted = source.columns["num_classes"]
    if wanted is not None and wanted != outputs:
        raise ConfigError(f"--num-classes {wanted} but network {model.key!r} has "
                          f"{outputs} outputs: drop --num-classes or use another network")
    return outputs


def check_files(path: Path) -> int:
    """Reads every data file's footer (no rows) before Spark starts: a truncated, corrupt or
    unreadable file, or one whose columns differ from the first's, is one line naming it.
    Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith((".", "_")) for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"--parquet {path} holds no data files: give a Parquet file or a "
                        "folder of them")
    rows, first = 0, None
    for file in files:
        try:
            metadata = pq.read_metadata(file)
        except OSError as exc:  # a file system error (ArrowIOError is one too)
            raise DataError(f"Parquet file {file} cannot be read ({exc.strerror or exc}): "
                            "fix its permissions or remove it") from None
        except (pa.ArrowException, ValueError) as exc:
            raise DataError(f"{file} is not a readable Parquet file ({str(exc)[:200]}): it is "
                            "truncated or corrupt; rewrite or remove it") from None
        schema = metadata.schema.to_arrow_schema()
        if first is None:
            first = (file, schema)
        elif not schema.equals(first[1]):
            differing = sorted(set(map(str, schema)) ^ set(map(str, first[1])))
            raise DataError(f"Parquet file {file} has other columns than {first[0]} "
                            f"({', '.join(differing[:3])}): give files of one schema")
        rows += metadata.num_rows
    return rows


def load(spark: SparkSession, source: DataSource, config: TrainConfig,
         num_classes: int, *, streamed: bool = False) -> SparkData:
    """Validates the Parquet data and caches it as K shards (raises DataError on bad rows)."""
    from sparknet.data.columns import check_columns, default_scale
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import dataframe_data
    from sparknet.ml.estimator import check_label, label_width_of
    from sparknet.models.objectives import resolve_objective

    objective = resolve_objective(config.objective)
    features, label = source.columns["features"], source.columns["label"]
    weight = source.columns.get("weight")
    df = spark.read.parquet(source.path)
    kind = check_columns(df, features=features, label=label)
    check_label(objective, df, label)
    spec = InputSpec(shape=tuple(source.columns["input_shape"]), num_classes=num_classes,
                     scale=default_scale(kind),
                     label_width=label_width_of(objective, num_classes, df, label),
                     binary_targets=objective.binary_targets, row_weights=weight is not None)
    data, summary = dataframe_data(df, features=features, label=label, spec=spec, weight=weight,
                                   num_workers=config.engine.num_workers,
                                   batch_size=config.engine.batch_size,
                                   streamed=streamed,
                                   decode_threads=config.engine.decode_threads)
    print(f"parquet: {sum(summary.shard_sizes):,} rows in {len(summary.shard_sizes)} shards "
          f"from {source.path}")
    return data
