"""``sparknet train --parquet PATH``: train on a Parquet dataset instead of Fashion-MNIST.

The features column may hold ML vectors, numeric arrays, PNG/JPEG bytes or image structs; the
label column what the objective needs: class indices, 0/1, 0/1 vectors or real targets (see
``sparknet.data.dataframe``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparknet.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sparknet.config import TrainConfig
    from sparknet.data.sources import SparkData


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("Parquet input (instead of Fashion-MNIST)")
    group.add_argument("--parquet", type=Path, default=None, metavar="PATH",
                       help="train on this Parquet file or folder")
    group.add_argument("--features", default="features", metavar="COL",
                       help="features column of --parquet (default features)")
    group.add_argument("--label", default="label", metavar="COL",
                       help="label column of --parquet (default label)")
    group.add_argument("--input-shape", type=_shape, default=(1, 28, 28), metavar="C,H,W",
                       help="shape of one example as network input (default 1,28,28)")
    group.add_argument("--num-classes", type=int, default=None, metavar="N",
                       help="number of classes (default: the network's number of outputs)")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,28,28") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape of positive dims")
    return shape


def check(args: argparse.Namespace, config: TrainConfig) -> int:
    """Cheap checks before Spark starts; returns the number of classes."""
    from sparknet.ml.estimator import network_outputs
    from sparknet.models.objectives import resolve_objective
    from sparknet.models.registry import model_of

    if not Path(args.parquet).exists():
        raise ConfigError(f"--parquet {args.parquet} does not exist: give a Parquet file or "
                          "folder")
    model = model_of(config)
    outputs = network_outputs(model, model.network_shape(args.input_shape),
                              resolve_objective(config.objective))
    if args.num_classes is not None and args.num_classes != outputs:
        raise ConfigError(f"--num-classes {args.num_classes} but network {config.model!r} has "
                          f"{outputs} outputs: drop --num-classes or use another network")
    return outputs


def load(spark: SparkSession, args: argparse.Namespace, config: TrainConfig,
         num_classes: int) -> SparkData:
    """Validates the Parquet data and caches it as K shards (raises DataError on bad rows)."""
    from sparknet.data.dataframe import check_columns, dataframe_data, default_scale
    from sparknet.data.shards import InputSpec
    from sparknet.ml.estimator import label_width_of
    from sparknet.models.objectives import resolve_objective

    objective = resolve_objective(config.objective)
    df = spark.read.parquet(str(args.parquet))
    kind = check_columns(df, features=args.features, label=args.label,
                         vector_labels=objective.vector_labels, objective=objective.name)
    spec = InputSpec(shape=args.input_shape, num_classes=num_classes, scale=default_scale(kind),
                     label_width=label_width_of(objective, num_classes, df, args.label),
                     binary_targets=objective.binary_targets)
    data, summary = dataframe_data(df, features=args.features, label=args.label, spec=spec,
                                   num_workers=config.engine.num_workers,
                                   batch_size=config.engine.batch_size)
    print(f"parquet: {sum(summary.shard_sizes):,} rows in {len(summary.shard_sizes)} shards "
          f"from {args.parquet}")
    return data
