"""What a ``sparknet train`` run reads and where it writes: the ``[run]`` table and its flags.

Training settings (``TrainConfig``) decide the weights; these decide the data, the run
directory and the Spark to use. The data part is saved in the run directory (``run.json``,
with a fingerprint of the data) so that ``--resume`` trains on the same examples or refuses.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sparknet.data import fashion_mnist
from sparknet.errors import ConfigError, DataError
from sparknet.weights_dir import atomic_write_text

RUN_FILE = "run.json"
DATA_KINDS = ("fashion-mnist", "parquet", "images", "caffe-db")
RUN_FORMAT = "sparknet-run/1"
DEFAULT_START_TIMEOUT = 120.0

# [run] key -> (accepted types, what it holds)
RUN_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "output": ((str,), "a folder"),
    "data_dir": ((str,), "a folder"),
    "master": ((str,), "a Spark master URL"),
    "train_limit": ((int,), "a number of examples >= 1"),
    "test_limit": ((int,), "a number of examples >= 1"),
    "start_timeout": ((int, float), "seconds > 0"),
    "mlflow": ((str,), "an MLflow tracking URI (\"\": MLflow's default)"),
    "mlflow_experiment": ((str,), "an MLflow experiment name"),
}


@dataclass(frozen=True)
class DataSource:
    """The examples a run trains on; equal sources with equal fingerprints are the same data."""

    kind: str                           # "fashion-mnist", "parquet", "images" or "caffe-db"
    path: str                           # data_dir, the Parquet, image or database folder
    train_limit: int | None = None
    test_limit: int | None = None
    columns: dict[str, Any] = field(default_factory=dict)  # parquet: features, label, ...

    def fingerprint(self) -> str:
        """Fashion-MNIST: a hash of its files' bytes; Parquet and image folders: of each file's
        name, size and modification time (reading a large dataset twice would cost more than
        the check)."""
        digest = hashlib.sha256()
        root = Path(self.path)
        if self.kind == "fashion-mnist":
            for names in fashion_mnist.FILES.values():
                for name in names:
                    digest.update(name.encode())
                    digest.update((root / name).read_bytes())
            return digest.hexdigest()[:32]
        if self.kind == "caffe-db" and "files" in self.columns:  # HDF5Data: list + files
            files = [root, *(Path(p) for p in self.columns["files"])]
        elif self.kind == "caffe-db":
            # LMDB: its one data file; LevelDB rewrites its files when opened, so only the
            # path is compared for it.
            files = [root / "data.mdb"] if (root / "data.mdb").is_file() else []
        else:
            files = sorted(p for p in ([root] if root.is_file() else root.rglob("*"))
                           if p.is_file())
        for p in files:
            stat = p.stat()
            name = str(p.relative_to(root.parent) if p.is_relative_to(root.parent) else p)
            digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32]


@dataclass(frozen=True)
class RunSettings:
    output: Path
    master: str | None
    data: DataSource
    start_timeout: float = DEFAULT_START_TIMEOUT
    mlflow: str | None = None             # tracking URI ("": MLflow's default); None: off
    mlflow_experiment: str | None = None
    mlflow_run_id: str | None = None      # the run a resumed run continues


def check_run_table(table: Any, origin: str) -> dict[str, Any]:
    """The ``[run]`` table, every key known and of the right type."""
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [run] must be a table, got {table!r}")
    for key, value in table.items():
        if key not in RUN_KEYS:
            close = difflib.get_close_matches(key, RUN_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{origin}: unknown [run] key {key!r}{hint}; known keys are "
                              f"{sorted(RUN_KEYS)}")
        types, what = RUN_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"{origin}: [run] {key} = {value!r} is invalid: it must be {what}")
    return table


def _positive(convert: type, what: str) -> Any:
    """An argparse type: ``convert(text)``, which must be a ``what`` above zero."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{value} is not >= 1" if convert is int
                                             else f"{value} is not > 0")
        return value
    return parse


positive_int = _positive(int, "a whole number")
positive_seconds = _positive(float, "a number of seconds")


def check_limits(data: DataSource, *, num_workers: int, batch_size: int) -> None:
    """Limits that leave a worker fewer examples than one batch are refused, not padded."""
    for name in ("train_limit", "test_limit"):
        value = getattr(data, name)
        if value is not None and (isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name}={value!r} is invalid: give a number of examples >= 1")
    if data.train_limit is not None and data.train_limit // num_workers < batch_size:
        raise ConfigError(
            f"train_limit={data.train_limit} leaves each of the {num_workers} workers "
            f"{data.train_limit // num_workers} examples, fewer than one batch of {batch_size}: "
            f"raise the limit to at least {num_workers * batch_size} or lower --batch-size")


def check_rows(rows: int, *, num_workers: int, batch_size: int, what: str) -> None:
    """Every worker gets at least one batch of the ``rows`` training examples (before Spark
    starts: an absurd --num-workers or --batch-size is found here, not in the first job)."""
    if rows // num_workers < batch_size:
        raise ConfigError(f"{what} has {rows:,} training examples: each of the {num_workers:,} "
                          f"workers would get {rows // num_workers:,}, fewer than one batch of "
                          f"{batch_size:,}; lower --num-workers or --batch-size")


def check_writable(output: Path) -> None:
    """The run directory can be created and written, checked before Spark starts."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output} is a file, not a folder: choose another --output")
    ancestor = output
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"output {output} is under {ancestor}, which is a file: choose "
                          "another --output")
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {output} "
                          f"({exc.strerror or exc}): choose another --output") from None


# What a run writes in its folder: an earlier run is recognised, and --overwrite removes, these.
RUN_ENTRIES = ("config.json", "metrics.jsonl", "checkpoints", "final", RUN_FILE,
               "mlflow.json", "metrics.png", "classes.json", "spark.log", "caffe_db.parquet")


def check_new_output(output: Path, *, overwrite: bool) -> None:
    """A new run's folder holds no earlier run, unless ``--overwrite`` replaces it."""
    found = [name for name in RUN_ENTRIES[:5] if os.path.lexists(output / name)]
    if found and not overwrite:
        raise ConfigError(f"output {output} holds an earlier run ({found[0]}): continue it with "
                          f"--resume {output}, choose another --output, or pass --overwrite to "
                          "replace it")


def clear_run(output: Path) -> None:
    """Deletes an earlier run's files in ``output`` (``--overwrite``), nothing else there."""
    for name in RUN_ENTRIES:
        path = output / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def save_run_file(output: Path, data: DataSource) -> None:
    record = {"format": RUN_FORMAT, "data": {**asdict(data), "fingerprint": data.fingerprint()}}
    atomic_write_text(output / RUN_FILE, json.dumps(record, indent=2))


def saved_data_source(run_dir: Path) -> DataSource:
    """The data a run trained on, checked against what is there now."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"cannot resume {run_dir}: it has no {RUN_FILE} (the record of its "
                          "data, written by sparknet since 0.2); start a new run")
    try:
        record = json.loads(path.read_text())
        data = record["data"]
        source = DataSource(kind=data["kind"], path=data["path"],
                            train_limit=data["train_limit"], test_limit=data["test_limit"],
                            columns=data["columns"])
        fingerprint = data["fingerprint"]
        valid = (record["format"] == RUN_FORMAT and source.kind in DATA_KINDS
                 and isinstance(source.path, str) and isinstance(source.columns, dict)
                 and all(v is None or (type(v) is int and v >= 1)
                         for v in (source.train_limit, source.test_limit)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} cannot be read ({exc!r}): the run directory was changed or is "
                        "corrupt") from None
    if not valid:
        raise DataError(f"{path} holds an invalid data record: the run directory was changed")
    try:
        now = source.fingerprint()
    except OSError as exc:
        raise DataError(f"cannot resume {run_dir}: its data at {source.path} cannot be read "
                        f"({exc.strerror or exc}); restore it there") from None
    if now != fingerprint:
        raise DataError(f"cannot resume {run_dir}: the data at {source.path} changed since the "
                        "run started (its fingerprint differs); a resumed run must see the same "
                        "examples; start a new run")
    return source


def default_master(num_workers: int) -> str:
    """K local threads, each failed task retried (plain local[K] never retries)."""
    return f"local[{num_workers},4]"


def absolute(path: Path | str) -> str:
    return os.path.abspath(path)


MLFLOW_FILE = "mlflow.json"


def save_mlflow_run(output: Path, *, tracking_uri: str, run_id: str) -> None:
    """The MLflow run a ``--resume`` continues."""
    atomic_write_text(output / MLFLOW_FILE,
                      json.dumps({"tracking_uri": tracking_uri, "run_id": run_id}, indent=2))


def saved_mlflow_run(run_dir: Path) -> tuple[str, str] | None:
    """(tracking URI, run id) of the run's MLflow run, None if it was not tracked."""
    path = run_dir / MLFLOW_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        uri, run_id = record["tracking_uri"], record["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} cannot be read ({exc!r}): delete it to resume without MLflow "
                        "or restore it") from None
    if not (isinstance(uri, str) and isinstance(run_id, str) and run_id):
        raise DataError(f"{path} holds no tracking URI and run id: delete it to resume "
                        "without MLflow or restore it")
    return uri, run_id
