"""``sparknet train --model caffe:NET.prototxt`` on the database its Data layer names.

When no data flag is given (``--parquet``, ``--images``, ``--data-dir``) and the TRAIN-phase
Data layer's ``source`` exists, the run trains on that LMDB/LevelDB: its Datum records are
written once, untransformed, to ``caffe_db.parquet`` in the run directory (streamed, a
batch of records at a time) and read from there like ``--parquet``; the layer's
transform_param runs in the workers, as for any ``caffe:`` model. An HDF5Data layer's file
list is read the same way: the rows of its two datasets (data, label), file by file in list
order, become ``caffe_db.parquet`` (``backend`` HDF5 in run.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparknet.cli.run_settings import DataSource, check_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sparknet.caffe.database import DatabaseSource
    from sparknet.caffe.hdf5_data import HDF5Source
    from sparknet.config import TrainConfig
    from sparknet.data.placement import SparkData
    from sparknet.models.kinds import ModelKind

KIND = "caffe-db"
HDF5 = "HDF5"  # the backend of an HDF5Data layer's file list
PARQUET = "caffe_db.parquet"


def data_source(model: str) -> DataSource | None:
    """The run's data when the model's TRAIN Data layer names an existing database (or its
    HDF5Data layer an existing file list)."""
    from sparknet.caffe.hdf5_data import HDF5Source
    from sparknet.caffe.model_kind import (
        is_caffe_ref,
        training_database,
        training_shape,
        unusable_training_source,
    )

    if not is_caffe_ref(model):
        return None
    database = training_database(model)
    if database is None:
        problem = unusable_training_source(model)
        if problem is not None:  # say so: a mistyped source must not train on other data
            print(f"caffe: not training on the Data layer's database ({problem}); training "
                  "on Fashion-MNIST instead: give --parquet or --images for your data")
        return None
    shape = list(training_shape(database))
    if isinstance(database, HDF5Source):
        return DataSource(kind=KIND, path=str(database.list_file.resolve()), columns={
            "backend": HDF5, "files": [str(p.resolve()) for p in database.files],
            "datasets": list(database.datasets), "input_shape": shape})
    return DataSource(kind=KIND, path=str(database.path.resolve()), columns={
        "backend": database.backend, "force_color": database.force_color,
        "force_gray": database.force_gray, "input_shape": shape})


def database(source: DataSource) -> DatabaseSource | HDF5Source:
    from sparknet.caffe.database import DatabaseSource
    from sparknet.caffe.hdf5_data import HDF5Source

    if source.columns["backend"] == HDF5:
        return HDF5Source(list_file=Path(source.path),
                          files=tuple(Path(p) for p in source.columns["files"]),
                          datasets=tuple(source.columns["datasets"]))
    return DatabaseSource(path=Path(source.path), backend=source.columns["backend"],
                          force_color=source.columns["force_color"],
                          force_gray=source.columns["force_gray"])


def check(source: DataSource, model: ModelKind, config: TrainConfig) -> int:
    """Cheap checks before Spark starts; returns the network's number of outputs."""
    from sparknet.caffe import hdf5_data
    from sparknet.caffe.database import count_records
    from sparknet.models.kinds import network_outputs
    from sparknet.models.objectives import resolve_objective

    data = database(source)
    rows = hdf5_data.count_rows(data) if isinstance(data, hdf5_data.HDF5Source) else \
        count_records(data)
    check_rows(rows, num_workers=config.engine.num_workers,
               batch_size=config.engine.batch_size, what=f"database {source.path}")
    outputs = network_outputs(model, tuple(source.columns["input_shape"]))
    resolve_objective(config.objective).check_outputs(outputs, network=model.key)
    return outputs


def load(spark: SparkSession, source: DataSource, config: TrainConfig, num_classes: int,
         output: Path, *, streamed: bool = False) -> SparkData:
    """The database as K shards, through ``caffe_db.parquet`` in the run directory (written
    on the first start, reused on ``--resume``)."""
    from sparknet.caffe import hdf5_data
    from sparknet.caffe.database import write_parquet
    from sparknet.cli import parquet_input

    target = output / PARQUET
    if not target.is_file():
        data = database(source)
        if isinstance(data, hdf5_data.HDF5Source):
            rows = hdf5_data.write_parquet(data, target)
        else:
            rows = write_parquet(data, target)
        print(f"caffe database: {rows:,} records of {source.path} -> {target}")
    columns: dict[str, Any] = {**parquet_input.DEFAULT_COLUMNS,
                               "input_shape": source.columns["input_shape"]}
    parquet = DataSource(kind="parquet", path=str(target), columns=columns)
    return parquet_input.load(spark, parquet, config, num_classes, streamed=streamed)
