"""Checkpoints and results: directories of safetensors + JSON, never pickles.

A checkpoint is written to a temporary sibling directory and renamed into place, then the
``LATEST`` pointer is replaced atomically: a crash at any moment leaves either the previous
checkpoint or the new one, never a half-written one that loads.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from sparknet.errors import DataError

MODEL_FILE = "model.safetensors"
STATE_FILE = "optimizer.safetensors"
META_FILE = "state.json"
LATEST = "LATEST"


@dataclass(frozen=True)
class Snapshot:
    """Everything needed to continue training bit-identically."""

    tensors: dict[str, np.ndarray]          # model state by state-dict name
    optimizer: dict[str, np.ndarray]        # outer momentum, averaged worker momentum
    meta: dict[str, Any]                    # round, step offset, config, tau decisions, versions


def write_snapshot(directory: Path, snapshot: Snapshot) -> None:
    """Writes a snapshot directory atomically (temporary sibling, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    # np.ascontiguousarray would turn 0-d tensors (BatchNorm's counter) into shape (1,).
    save_file({k: np.array(v, order="C") for k, v in snapshot.tensors.items()},
              str(tmp / MODEL_FILE))
    save_file({k: np.array(v, order="C") for k, v in snapshot.optimizer.items()},
              str(tmp / STATE_FILE))
    _write_json(tmp / META_FILE, snapshot.meta)
    _fsync_dir(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.rename(tmp, directory)
    _fsync_dir(directory.parent)


def read_snapshot(directory: Path) -> Snapshot:
    directory = Path(directory)
    for name in (MODEL_FILE, STATE_FILE, META_FILE):
        if not (directory / name).is_file():
            raise DataError(f"{directory} is not a sparknet checkpoint: {name} is missing")
    try:
        meta = json.loads((directory / META_FILE).read_text())
        return Snapshot(load_file(str(directory / MODEL_FILE)),
                        load_file(str(directory / STATE_FILE)), meta)
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"checkpoint {directory} cannot be read ({exc}): it is corrupt; "
                        "resume from an earlier one or start again") from None


def save_checkpoint(run_dir: Path, snapshot: Snapshot, *, round_index: int, keep: int = 2) -> Path:
    """Writes ``checkpoints/round-NNNNNN``, points ``LATEST`` at it, keeps the newest ``keep``."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"round-{round_index:06d}"
    write_snapshot(target, snapshot)
    _atomic_write_text(folder / LATEST, target.name)
    for old in sorted(folder.glob("round-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".round-*.tmp-*"):  # left by writers killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    return pointer.parent / pointer.read_text().strip()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
