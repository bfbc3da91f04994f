"""A Caffe HDF5Data layer's files as arrays and Parquet.

Caffe 1.0's HDF5DataLayer reads ``hdf5_data_param.source``, a text file naming HDF5 files
(whitespace-separated, one a line by convention), and from each file the datasets named by
the layer's tops, in their order: every dataset is read as float (integer and float types
alike), has at least one axis, and all of a file's datasets have the same first dimension
(its rows). A forward pass copies ``batch_size`` rows into each top, going through the rows of
the first file, then the next file's, and from the first file again after the last: a batch
may span files. The tops' shapes are ``batch_size`` by the first file's trailing dimensions.
With ``shuffle: true`` Caffe permutes the files and each file's rows with
``std::random_shuffle``; sparknet keeps the list order (Caffe's random numbers are not
reproduced) and the engine draws its own batches. There is no transform_param.

Pure functions with no Spark: ``hdf5_source_of_layer`` finds the list file, ``file_rows``
reads one file, ``first_batch`` is Caffe's first forward pass without shuffle,
``hdf5_batches`` yields Arrow record batches of ``features`` (float32 list, the first top's
row flattened) and ``label`` (the second top: float64 for one value a row, class indices
as integral doubles; a float32 list otherwise), and ``write_parquet`` writes them to one
Parquet file. Needs h5py (the ``hdf5`` extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.caffe.database import ROWS_PER_BATCH, write_batches
from sparknet.caffe.prototxt import filter_phase, read_net
from sparknet.errors import DataError, require_package


@dataclass(frozen=True, kw_only=True)
class HDF5Source:
    """An HDF5Data layer's files (resolved, in list order) and the datasets it reads (its
    tops: the first is the data, the second the label)."""

    list_file: Path
    files: tuple[Path, ...]
    datasets: tuple[str, ...]
    shuffle: bool = False

    def __post_init__(self) -> None:
        if not self.files:
            raise DataError(f"{self.list_file} names no HDF5 file; Caffe needs at least one "
                            "(one path a line)")
        if not self.datasets:
            raise DataError(f"{self.list_file}: the HDF5Data layer has no top; give it the "
                            "names of the datasets to read (data, label)")


def _find(named: Path, folders: list[Path]) -> Path | None:
    candidates = [named] if named.is_absolute() else [f / named for f in folders]
    return next((p for p in candidates if p.exists()), None)


def hdf5_source_of_layer(layer: Any, *, folder: Path) -> HDF5Source:
    """The files an ``HDF5Data`` layer names. A relative ``source`` is looked up beside the
    prototxt (``folder``) first, then in the working directory (where Caffe looks); a
    relative file in the list beside the list file, the prototxt, then the working
    directory."""
    if layer.type != "HDF5Data" or not layer.hdf5_data_param.source:
        raise DataError(f"layer {layer.name!r} ({layer.type}) names no HDF5 file list; give "
                        "an HDF5Data layer with hdf5_data_param.source")
    named = Path(layer.hdf5_data_param.source)
    found = _find(named, [folder, Path()])
    if found is None or not found.is_file():
        raise DataError(f"layer {layer.name!r}: HDF5 file list {named} not found (looked "
                        f"beside {folder} and in the working directory); fix "
                        "hdf5_data_param.source")
    files = []
    for token in found.read_text().split():  # Caffe reads it with `>>`: any whitespace
        path = _find(Path(token), [found.parent, folder, Path()])
        if path is None:
            raise DataError(f"{found} names {token}, which is not found (looked beside the "
                            "list, the prototxt and in the working directory)")
        files.append(path)
    return HDF5Source(list_file=found, files=tuple(files), datasets=tuple(layer.top),
                      shuffle=layer.hdf5_data_param.shuffle)


def hdf5_source(path: Path, *, phase: str = "TRAIN") -> HDF5Source:
    """The files of the first HDF5Data layer of a ``.prototxt`` in ``phase``."""
    definition = filter_phase(read_net(path), phase)
    layer = next((x for x in definition.layer if x.type == "HDF5Data"), None)
    if layer is None:
        raise DataError(f"{path} has no HDF5Data layer in the {phase} phase")
    return hdf5_source_of_layer(layer, folder=Path(path).parent)


def _h5py() -> Any:
    require_package("h5py", extra="hdf5", needed_for="reading a Caffe HDF5Data layer's files")
    import h5py

    return h5py


def file_rows(path: Path, datasets: tuple[str, ...]) -> list[np.ndarray]:
    """The datasets of one file as float32 arrays (Caffe's ``hdf5_load_nd_dataset``),
    checked: present, numeric, at least one axis, one first dimension for all."""
    h5py = _h5py()
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path} is not an HDF5 file ({err}); fix the list "
                        "hdf5_data_param.source names") from None
    with file:
        arrays = []
        for name in datasets:
            if name not in file or not isinstance(file[name], h5py.Dataset):
                raise DataError(f"{path} has no dataset {name!r} (it holds {sorted(file)}); "
                                "an HDF5Data layer reads the datasets named by its tops")
            dataset = file[name]
            if dataset.dtype.kind not in "fiu":
                raise DataError(f"{path}: dataset {name!r} is of type {dataset.dtype}; Caffe "
                                "reads only integer and float datasets")
            if dataset.ndim < 1:
                raise DataError(f"{path}: dataset {name!r} is a scalar; Caffe needs at "
                                "least one axis (rows)")
            arrays.append(np.asarray(dataset[...], dtype=np.float32))
    rows = {a.shape[0] for a in arrays}
    if len(rows) > 1:
        raise DataError(f"{path}: datasets {list(datasets)} have {[a.shape[0] for a in arrays]}"
                        " rows; Caffe needs the same number in each")
    if not rows or 0 in rows:
        raise DataError(f"{path} has no rows")
    return arrays


def _files(source: HDF5Source) -> Iterator[tuple[Path, list[np.ndarray]]]:
    first: list[tuple[int, ...]] | None = None
    for path in source.files:
        arrays = file_rows(path, source.datasets)
        shapes = [a.shape[1:] for a in arrays]
        if first is None:
            first = shapes
        elif shapes != first:
            raise DataError(f"{path}: rows of shapes {shapes}, the first file's {first}; "
                            "Caffe copies rows of the first file's shape: make them equal")
        yield path, arrays


def first_batch(source: HDF5Source, batch_size: int) -> list[np.ndarray]:
    """Caffe's first forward pass (without shuffle): ``batch_size`` rows of each top, through
    the files in list order and from the first again after the last."""
    parts: list[list[np.ndarray]] = [[] for _ in source.datasets]
    taken = 0
    while taken < batch_size:
        for _, arrays in _files(source):
            n = min(arrays[0].shape[0], batch_size - taken)
            for part, array in zip(parts, arrays, strict=True):
                part.append(array[:n])
            taken += n
            if taken == batch_size:
                break
    return [np.concatenate(part) for part in parts]


def hdf5_shape(source: HDF5Source) -> tuple[int, ...]:
    """The shape of one row of the first top (what Caffe's top has after the batch axis)."""
    return tuple(int(d) for d in file_rows(source.files[0], source.datasets[:1])[0].shape[1:])


def count_rows(source: HDF5Source) -> int:
    """The number of rows in all files (from the first dataset's shape, without reading)."""
    h5py = _h5py()
    total = 0
    for path in source.files:
        try:
            with h5py.File(path, "r") as file:
                total += int(file[source.datasets[0]].shape[0])
        except (OSError, KeyError) as err:
            raise DataError(f"{path}: cannot read dataset {source.datasets[0]!r} ({err})"
                            ) from None
    return total


def hdf5_batches(source: HDF5Source, *, rows_per_batch: int = ROWS_PER_BATCH,
                 limit: int | None = None) -> Iterator[Any]:
    """Arrow record batches of every row in list order: ``features`` (the first top's row,
    float32 list) and ``label`` (the second top's: float64 for one value a row, else a
    float32 list)."""
    import pyarrow as pa

    if len(source.datasets) < 2:
        raise DataError(f"the HDF5Data layer of {source.list_file} has one top "
                        f"({source.datasets[0]!r}); training needs a second top naming the "
                        "label dataset")
    if len(source.datasets) > 2:
        raise DataError(f"the HDF5Data layer of {source.list_file} has tops "
                        f"{list(source.datasets)}; sparknet trains on two (data, label)")
    left = limit
    for _, (data, label) in _files(source):
        if left is not None:
            data, label = data[:left], label[:left]
            left -= data.shape[0]
        for start in range(0, data.shape[0], rows_per_batch):
            yield _arrow_batch(data[start:start + rows_per_batch],
                               label[start:start + rows_per_batch], pa)
        if left is not None and left <= 0:
            return


def _arrow_batch(data: np.ndarray, label: np.ndarray, pa: Any) -> Any:
    flat = data.reshape(data.shape[0], -1)
    features = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    columns = [features.cast(pa.list_(pa.float32()))]
    targets = label.reshape(label.shape[0], -1)
    if targets.shape[1] == 1:
        columns.append(pa.array(targets[:, 0].astype(np.float64)))
    else:
        wide = pa.FixedSizeListArray.from_arrays(pa.array(targets.ravel()), targets.shape[1])
        columns.append(wide.cast(pa.list_(pa.float32())))
    return pa.RecordBatch.from_arrays(columns, names=["features", "label"])


def write_parquet(source: HDF5Source, target: Path, *, limit: int | None = None) -> int:
    """Streams every row into one Parquet file (columns ``features``, ``label``), one file
    of the list at a time; returns the number of rows."""
    return write_batches(hdf5_batches(source, limit=limit), target)
