"""Caffe weight files: ``.caffemodel`` (binary NetParameter), ``.caffemodel.h5`` snapshots
(``/data/<layer>/<i>``) and ``.binaryproto`` mean files, as plain numpy arrays.

Weights are returned as ``{layer name: [array, ...]}`` in Caffe's blob order; matching them
to a network and checking shapes is done by the network (see ``net.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.caffe import schema
from sparknet.caffe.prototxt import parse_net_binary
from sparknet.errors import CaffeFormatError, require_package

LayerBlobs = dict[str, list[np.ndarray]]


def blob_to_array(blob: Any, *, where: str) -> np.ndarray:
    """A BlobProto as a float32 (or float64 for double_data) array of its declared shape.

    Legacy blobs without ``shape`` use num/channels/height/width (always 4-D).
    """
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    if any(d < 0 for d in shape):
        raise CaffeFormatError(f"{where}: blob has a negative dimension {shape}")
    if len(blob.double_data):
        data = np.asarray(blob.double_data, dtype=np.float64)
    else:
        data = np.asarray(blob.data, dtype=np.float32)
    expected = int(np.prod(shape, dtype=np.int64))
    if data.size != expected:
        raise CaffeFormatError(
            f"{where}: blob shape {shape} needs {expected} values but the file holds "
            f"{data.size}; the file is truncated or corrupt"
        )
    return data.reshape(shape)


def array_to_blob(array: np.ndarray, blob: Any | None = None) -> Any:
    """A ``schema.RawBlobProto`` (``blob``, or a new one) holding ``array`` as float32 in the
    current ``shape`` form.

    It serialises to the bytes Caffe writes (a packed float field is one length-delimited run
    of little-endian values) with one copy of the array, not one conversion per value.
    """
    blob = schema.RawBlobProto() if blob is None else blob
    values = np.ascontiguousarray(array, dtype="<f4")
    blob.shape.dim.extend(int(d) for d in values.shape)
    if values.size:  # an empty packed field is not written at all
        blob.data = values.tobytes()
    return blob


def fit_legacy_shape(array: np.ndarray, expected: Sequence[int]) -> np.ndarray | None:
    """``array`` reshaped to ``expected`` when the shapes agree as Caffe's ShapeEquals does.

    A legacy 4-D blob (num, channels, height, width) fits a shape of up to 4 axes padded on
    the left with ones, e.g. (1, 1, 500, 800) fits (500, 800). Returns None if they disagree.
    """
    expected = tuple(int(d) for d in expected)
    if array.shape == expected:
        return array
    padded = (1,) * (4 - len(expected)) + expected
    if array.ndim == 4 and len(expected) <= 4 and padded == array.shape:
        return array.reshape(expected)
    return None


def weights_from_net(net: Any, *, source: str) -> LayerBlobs:
    """Blobs of every layer of a parsed NetParameter that has any, keyed by layer name."""
    out: LayerBlobs = {}
    for layer in net.layer:
        if not len(layer.blobs):
            continue
        if layer.name in out:
            raise CaffeFormatError(f"{source}: layer name {layer.name!r} holds blobs twice")
        out[layer.name] = [
            blob_to_array(b, where=f"{source}: layer {layer.name!r} blob {i}")
            for i, b in enumerate(layer.blobs)
        ]
    return out


def read_caffemodel(path: str | Path) -> LayerBlobs:
    """Read a binary ``.caffemodel`` (current or V1 format) into ``{layer: [arrays]}``."""
    net = parse_net_binary(_read_bytes(path, what="a .caffemodel"), source=str(path))
    if not len(net.layer):
        raise CaffeFormatError(f"{path} holds no layers; is it a Caffe .caffemodel (weights)?")
    return weights_from_net(net, source=str(path))


def read_caffemodel_h5(path: str | Path) -> LayerBlobs:
    """Read a Caffe HDF5 snapshot (``/data/<layer>/<i>``) into ``{layer: [arrays]}``."""
    require_package("h5py", extra="hdf5", needed_for="reading Caffe HDF5 weights")
    import h5py

    out: LayerBlobs = {}
    try:
        with h5py.File(path, "r") as file:
            data = file.get("data")
            if not isinstance(data, h5py.Group):
                raise CaffeFormatError(f"{path}: no /data group; not a Caffe HDF5 snapshot")
            groups = len(data)
            for name, group in data.items():
                if not isinstance(group, h5py.Group):
                    raise CaffeFormatError(f"{path}: /data/{name} is not a group of blobs")
                keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
                if keys != [str(i) for i in range(len(keys))]:
                    raise CaffeFormatError(f"{path}: /data/{name} blobs are not named 0..n-1")
                if keys:
                    out[name] = [np.asarray(group[k][()], dtype=np.float32) for k in keys]
    except OSError as err:
        raise CaffeFormatError(f"cannot read HDF5 weights {path}: {err}") from err
    if not groups:
        raise CaffeFormatError(f"{path}: /data holds no layers; is it a Caffe HDF5 snapshot?")
    return out


def write_caffemodel_h5(path: str | Path, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Write ``{layer: [arrays]}`` in Caffe's HDF5 snapshot layout."""
    require_package("h5py", extra="hdf5", needed_for="writing Caffe HDF5 weights")
    import h5py

    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        for name, blobs in weights.items():
            group = data.create_group(name)
            for i, array in enumerate(blobs):
                group.create_dataset(str(i), data=np.asarray(array, dtype=np.float32))


def read_weights(path: str | Path) -> LayerBlobs:
    """Read ``.caffemodel`` or ``.h5`` weights, chosen by the file name."""
    if str(path).endswith((".h5", ".hdf5")):
        return read_caffemodel_h5(path)
    return read_caffemodel(path)


def read_binaryproto(path: str | Path) -> np.ndarray:
    """Read a ``.binaryproto`` BlobProto (e.g. a mean image) as an array of its shape."""
    blob = schema.BlobProto()
    try:
        blob.ParseFromString(_read_bytes(path, what="a .binaryproto"))
    except Exception as err:  # protobuf raises DecodeError or RuntimeError by backend
        raise CaffeFormatError(f"{path} is not a valid BlobProto: {err}") from err
    return blob_to_array(blob, where=str(path))


def write_binaryproto(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a ``.binaryproto`` BlobProto."""
    Path(path).write_bytes(array_to_blob(array).SerializeToString())


def _read_bytes(path: str | Path, *, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CaffeFormatError(f"cannot read {path}: {err.strerror}; check the path") from err
    if not data:
        raise CaffeFormatError(f"{path} is empty (0 bytes); give {what} file with content")
    return data
