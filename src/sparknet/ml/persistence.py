"""A trained network as plain files: ``weights/model.safetensors`` + ``weights/network.json``.

Spark ML persistence writes the Params (``metadata/``, JSON); this module writes the weights
next to them and reads them back key by key with shape checks, without Spark, so tools such as
``sparknet export-onnx`` can read a saved model. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from sparknet.errors import ConfigError, DataError
from sparknet.flat import FlatLayout, state_tensors
from sparknet.models.registry import model_source

WEIGHTS_DIR = "weights"
TENSORS_FILE = "model.safetensors"
META_FILE = "network.json"
FORMAT = "sparknet-model/1"


@dataclass(frozen=True, kw_only=True)
class SavedNetwork:
    """Everything needed to rebuild and run the trained network, as plain data."""

    network: str
    input_shape: tuple[int, ...]
    num_classes: int
    input_scale: float
    layout: FlatLayout
    floats: np.ndarray
    ints: np.ndarray

    @property
    def token(self) -> str:
        """A content hash of the weights: the executors' cache key."""
        digest = hashlib.sha256(self.floats.tobytes())
        digest.update(self.ints.tobytes())
        return digest.hexdigest()[:24]


def local_path(path: str) -> Path:
    """A Spark ML save path as a local folder; other file systems are refused with the fix."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else path)
    raise ConfigError(f"cannot save or load sparknet weights at {path!r}: the weights are "
                      "written with local file I/O; give a local (or shared, mounted) path")


def write_network(folder: Path, saved: SavedNetwork) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # np.array, not np.ascontiguousarray: the latter turns 0-d counters into shape (1,).
    tensors = {k: np.array(v.numpy(), order="C")
               for k, v in state_tensors(saved.layout, saved.floats, saved.ints).items()}
    save_file(tensors, str(folder / TENSORS_FILE))
    meta = {"format": FORMAT, "network": saved.network, "input_shape": list(saved.input_shape),
            "num_classes": saved.num_classes, "input_scale": saved.input_scale,
            "tensors": [[e.name, list(e.shape)] for e in saved.layout.floats + saved.layout.ints],
            "sha256_prefix": saved.token}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))


def read_network(folder: Path) -> SavedNetwork:
    """Reads and checks a saved network: every tensor must match the rebuilt network."""
    for name in (TENSORS_FILE, META_FILE):
        if not (folder / name).is_file():
            raise DataError(f"{folder} holds no saved sparknet network: {name} is missing; give "
                            "the folder a SparkNetModel was saved to")
    try:
        meta: dict[str, Any] = json.loads((folder / META_FILE).read_text())
        tensors = load_file(str(folder / TENSORS_FILE))
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"saved network in {folder} cannot be read ({exc}): it is corrupt; "
                        "save the model again") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{folder / META_FILE} has format {meta.get('format')!r}, expected "
                        f"{FORMAT!r}: it was not written by this version of sparknet")
    layout = FlatLayout.of(model_source(meta["network"]).build())
    floats, ints = flat_from_tensors(layout, tensors, origin=str(folder))
    return SavedNetwork(network=meta["network"], input_shape=tuple(meta["input_shape"]),
                        num_classes=int(meta["num_classes"]),
                        input_scale=float(meta["input_scale"]), layout=layout, floats=floats,
                        ints=ints)


def flat_from_tensors(layout: FlatLayout, tensors: dict[str, np.ndarray], *,
                      origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Named tensors -> flat buffers; every tensor must be consumed and match its shape."""
    expected = {e.name for e in layout.floats + layout.ints}
    if set(tensors) != expected:
        raise DataError(f"weights in {origin} do not fit the network: missing "
                        f"{sorted(expected - set(tensors))}, unexpected "
                        f"{sorted(set(tensors) - expected)}")
    floats = np.empty(layout.num_floats, np.float32)
    ints = np.empty(layout.num_ints, np.int64)
    for entries, target in ((layout.floats, floats), (layout.ints, ints)):
        for e in entries:
            if tuple(tensors[e.name].shape) != e.shape:
                raise DataError(f"tensor {e.name} in {origin} has shape "
                                f"{tuple(tensors[e.name].shape)}, the network expects {e.shape}")
            target[e.offset: e.offset + e.size] = tensors[e.name].reshape(-1)
    return floats, ints
