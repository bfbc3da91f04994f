"""A trained network as a weights directory: ``weights/`` beside Spark ML's ``metadata/``.

Spark ML persistence writes the Params (JSON); the weights go through ``sparknet.weights_dir``
like every other weights directory, so tools such as ``sparknet export-onnx`` can read a
saved model without Spark. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

import sparknet.weights_dir as weights_dir
from sparknet.data.shards import InputSpec
from sparknet.errors import ConfigError, DataError
from sparknet.flat import FlatLayout
from sparknet.models.kinds import ModelKind
from sparknet.models.objectives import Objective, objective_named
from sparknet.models.registry import resolve_model, resolve_saved_model

WEIGHTS_DIR = "weights"
TENSORS_FILE = weights_dir.MODEL_FILE
META_FILE = weights_dir.META_FILE
FORMAT = "sparknet-model/3"
# Formats this version reads: /2 lacks the objective (multiclass) and the network's arguments.
READABLE_FORMATS = ("sparknet-model/2", FORMAT)
SUMMARY_FILE = "summary.json"


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
    objective: str = "multiclass"
    network_args: str | None = None
    labels: tuple[str, ...] | None = None  # class i's name, for predictedLabel

    def kind(self) -> ModelKind:
        return resolve_model(self.network, args=self.network_args)

    def objective_kind(self) -> Objective:
        """The objective it was trained for (a loss factory is not imported: scoring does not
        need the loss)."""
        return objective_named(self.objective)

    def input_spec(self, *, shape: tuple[int, ...] | None = None,
                   scale: float | None = None) -> InputSpec:
        """The input for scoring (the saved shape and scale unless given). Scoring reads no
        labels; float targets as wide as the output let any objective's outputs through."""
        return InputSpec(shape=self.input_shape if shape is None else shape,
                         num_classes=self.num_classes,
                         scale=self.input_scale if scale is None else scale,
                         label_width=self.num_classes)

    @property
    def token(self) -> str:
        """A content hash of the weights: the executors' cache key."""
        digest = hashlib.sha256(self.floats.tobytes())
        digest.update(self.ints.tobytes())
        return digest.hexdigest()[:24]


def local_path(path: str) -> Path:
    """A Spark ML save path as a local folder (Spark Connect, where the client writes the
    weights itself); other file systems are refused with the fix."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else path)
    raise ConfigError(f"cannot save or load sparknet weights at {path!r} from a Spark Connect "
                      "client: the client writes them with local file I/O; give a local (or "
                      "shared, mounted) path, or save from a classic session (any Hadoop URI)")


class HadoopFolder:
    """A folder on any file system the session's Hadoop configuration reaches (``file://``,
    ``hdfs://``, ``s3a://``, a plain path on the default file system), through the JVM's
    ``FileSystem``: files are written locally, then copied there, and copied back to read."""

    def __init__(self, spark: Any, path: str) -> None:
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self._path = jvm.org.apache.hadoop.fs.Path(path)
        self._fs = self._path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        # Plain files, as the Connect path writes them: no .crc beside them to go stale.
        self._fs.setWriteChecksum(False)
        self._fs.setVerifyChecksum(False)

    def _child(self, name: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(self._path, name)

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._child(name)))

    def delete(self) -> None:
        if self._fs.exists(self._path):
            self._fs.delete(self._path, True)

    def put(self, local: Path, name: str) -> None:
        """Copies the local file or folder ``local`` to ``name`` in this folder."""
        source = self._jvm.org.apache.hadoop.fs.Path(local.resolve().as_uri())
        self._fs.copyFromLocalFile(False, True, source, self._child(name))

    def get(self, name: str, local: Path) -> None:
        """Copies ``name`` of this folder to the local path ``local`` (no checksum files)."""
        target = self._jvm.org.apache.hadoop.fs.Path(local.resolve().as_uri())
        self._fs.copyToLocalFile(False, self._child(name), target, True)


def write_network(folder: Path, saved: SavedNetwork) -> None:
    meta = {"format": FORMAT, "network": saved.network, "input_shape": list(saved.input_shape),
            "num_classes": saved.num_classes, "input_scale": saved.input_scale,
            "objective": saved.objective, "network_args": saved.network_args,
            "labels": None if saved.labels is None else list(saved.labels),
            "sha256_prefix": saved.token}
    tensors = weights_dir.named_tensors(saved.layout, saved.floats, saved.ints)
    weights_dir.write(folder, weights_dir.WeightsDir(tensors, {}, meta))


def read_network(folder: Path) -> SavedNetwork:
    """Reads and checks a saved network: every tensor must match the rebuilt network."""
    contents = weights_dir.read(folder, what="saved sparknet network")
    meta: dict[str, Any] = contents.meta
    if meta.get("format") not in READABLE_FORMATS:
        raise DataError(f"{folder / META_FILE} has format {meta.get('format')!r}, expected "
                        f"one of {list(READABLE_FORMATS)}: it was not written by this version "
                        "of sparknet")
    try:
        network = str(meta["network"])
        shape = tuple(int(d) for d in meta["input_shape"])
        num_classes, scale = int(meta["num_classes"]), float(meta["input_scale"])
        objective = str(meta.get("objective", "multiclass"))
        args = meta.get("network_args")
        network_args = None if args is None else str(args)
        names = meta.get("labels")
        if names is not None and not (isinstance(names, list) and
                                      all(isinstance(n, str) for n in names)):
            raise TypeError(f"labels is {type(names).__name__}, not a list of names")
        labels = None if names is None else tuple(names)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{folder / META_FILE} has a missing or malformed field ({exc!r}): "
                        "save the model again") from None
    try:
        objective_named(objective)  # imports nothing: scoring never needs a loss factory
    except ConfigError as exc:
        raise DataError(f"{folder / META_FILE}: {exc}; the model was saved by another "
                        "version of sparknet") from None
    ref = network[:80]
    fix = (f"call sparknet.models.trust_factory({ref!r}) before loading, or load with "
           f"SparkNetModel.load(path, trust=[{ref!r}]) (sparknet export-onnx: --model {ref})")
    layout = FlatLayout.of(resolve_saved_model(network, origin=str(folder / META_FILE),
                                               args=network_args, fix=fix).build())
    floats, ints = weights_dir.flat_from_tensors(layout, contents.tensors, origin=str(folder))
    return SavedNetwork(network=network, input_shape=shape, num_classes=num_classes,
                        input_scale=scale, layout=layout, floats=floats, ints=ints,
                        objective=objective, network_args=network_args, labels=labels)


def write_summary(folder: Path, records: dict[str, Any]) -> None:
    """The training summary beside the weights, as JSON."""
    weights_dir.atomic_write_text(folder / SUMMARY_FILE, json.dumps(records, indent=1))


def read_summary(folder: Path) -> dict[str, Any] | None:
    """The saved training summary, or None for a model saved without one (format /2)."""
    path = folder / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): save the model again") from None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), list):
        raise DataError(f"{path} is not a sparknet training summary: save the model again")
    return data
