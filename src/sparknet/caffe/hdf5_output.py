"""Caffe's HDF5Output layer: a forward pass writes its two bottoms to an HDF5 file.

Caffe 1.0's HDF5OutputLayer takes exactly two bottoms and has no top. A forward pass writes
them to ``hdf5_output_param.file_name`` (relative to the working directory) as the float32
datasets ``data`` and ``label``, each shaped (N, C, H, W) by Caffe's legacy accessors (axes
a blob lacks are 1; a blob of more than 4 axes, or two bottoms of different N, are refused).
It sends its bottoms no gradient. Caffe creates the file, empty, when the net is set up, and
a second forward pass finds the datasets there and aborts ("Failed to make float dataset
data"), leaving a file HDF5 cannot open. sparknet writes the whole file in the first forward
pass, creating it then rather than when the net is built (sparknet builds a net in several
processes, and runs there only what the logits need), and refuses a second pass in one line,
keeping the first pass's file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparknet.caffe.layers import CaffeLayer, Shape
from sparknet.errors import CaffeFormatError, DataError, require_package

DATASETS = ("data", "label")  # Caffe's HDF5_DATA_DATASET_NAME, HDF5_DATA_LABEL_NAME


def legacy_shape(shape: Sequence[int], where: str) -> tuple[int, int, int, int]:
    """Caffe's (num, channels, height, width) of a blob: its shape with missing axes 1."""
    if len(shape) > 4:
        raise CaffeFormatError(f"{where}: a bottom of shape {tuple(shape)} has more than 4 "
                               "axes; Caffe's HDF5Output writes blobs of at most 4 (reshape "
                               "it first)")
    padded = (*(int(d) for d in shape), 1, 1, 1, 1)
    return padded[0], padded[1], padded[2], padded[3]


def write_hdf5_output(path: str | Path, data: np.ndarray, label: np.ndarray) -> None:
    """The file Caffe's HDF5Output writes: float32 datasets ``data`` and ``label``."""
    require_package("h5py", extra="hdf5", needed_for="Caffe's HDF5Output layer")
    import h5py

    try:
        with h5py.File(path, "w") as file:
            for name, array in zip(DATASETS, (data, label), strict=True):
                file.create_dataset(name, data=np.ascontiguousarray(array, dtype=np.float32))
    except OSError as err:
        raise DataError(f"cannot write the HDF5 file {path}: {err}; check that its folder "
                        "exists and is writable") from None


class HDF5Output(CaffeLayer):
    """Writes bottoms (data, label) to its file in the first forward pass (see above)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        where = self.where()
        if len(shapes) != 2:
            raise CaffeFormatError(f"{where}: takes 2 bottoms (data and label), got "
                                   f"{len(shapes)}")
        if len(param.top):
            raise CaffeFormatError(f"{where}: has no top blob; remove its top")
        self.file_name = str(param.hdf5_output_param.file_name)
        if not self.file_name:
            raise CaffeFormatError(f"{where}: hdf5_output_param.file_name is empty; name the "
                                   "HDF5 file to write")
        self._check(shapes)
        self.written = False
        self._probing = False

    def _check(self, shapes: Sequence[Shape]) -> None:
        nums = [legacy_shape(shape, self.where())[0] for shape in shapes]
        if nums[0] != nums[1]:
            raise CaffeFormatError(f"{self.where()}: data and label have {nums[0]} and "
                                   f"{nums[1]} rows; Caffe's HDF5Output needs as many of each")

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        self._probing = True
        try:
            yield
        finally:
            self._probing = False

    def forward(self, data: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._probing:
            return ()
        if self.written:
            raise DataError(f"{self.where()}: {self.file_name} already holds the datasets "
                            "data and label of an earlier forward pass; Caffe aborts on a "
                            "second pass (Failed to make float dataset data): build the net "
                            "again to write the file again")
        try:
            self._check([tuple(data.shape), tuple(label.shape)])
        except CaffeFormatError as err:
            raise DataError(str(err)) from None
        arrays = [b.detach().float().cpu().numpy().reshape(legacy_shape(b.shape, ""))
                  for b in (data, label)]
        write_hdf5_output(self.file_name, arrays[0], arrays[1])
        self.written = True
        return ()
