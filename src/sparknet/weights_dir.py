"""Weights directories: safetensors + JSON, never pickles; one format for every use.

A run's ``final/``, each checkpoint ``checkpoints/round-NNNNNN`` and a saved model's
``weights/`` are the same kind of directory: ``model.safetensors`` (the network's state by
state-dict name), ``optimizer.safetensors`` (outer momentum, averaged worker momentum; empty
for a saved model) and ``state.json`` (everything else, plain JSON). A directory is written to
a temporary sibling and renamed into place, and a checkpoint's ``LATEST`` pointer is replaced
atomically: a crash at any moment leaves the previous directory or the new one, never a
half-written one that loads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from sparknet.errors import DataError
from sparknet.flat import FlatLayout

MODEL_FILE = "model.safetensors"
STATE_FILE = "optimizer.safetensors"
META_FILE = "state.json"
LATEST = "LATEST"
_CHECKPOINT_NAME = re.compile(r"round-\d{6,}")


@dataclass(frozen=True)
class WeightsDir:
    """The contents of one weights directory."""

    tensors: dict[str, np.ndarray]          # model state by state-dict name
    optimizer: dict[str, np.ndarray]        # outer momentum, averaged worker momentum
    meta: dict[str, Any]                    # round, config, format, versions...


def write(directory: Path, contents: WeightsDir) -> None:
    """Writes a weights directory atomically (temporary sibling, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    try:
        _remove(tmp)
        tmp.mkdir(parents=True)
        # np.ascontiguousarray would turn 0-d tensors (BatchNorm's counter) into shape (1,).
        save_file({k: np.array(v, order="C") for k, v in contents.tensors.items()},
                  str(tmp / MODEL_FILE))
        save_file({k: np.array(v, order="C") for k, v in contents.optimizer.items()},
                  str(tmp / STATE_FILE))
        for name in (MODEL_FILE, STATE_FILE):  # on disk before the rename makes them visible
            _fsync_file(tmp / name)
        _write_json(tmp / META_FILE, contents.meta)
        _fsync_dir(tmp)
    except (OSError, SafetensorError) as exc:
        # Disk full, a file size limit, a read-only folder: the half-written copy goes, and
        # whatever was at ``directory`` before stays.
        with contextlib.suppress(OSError):
            _remove(tmp)
        raise DataError(f"cannot write {directory} ({_reason(exc)}): free space there or "
                        "choose another folder; nothing was replaced") from None
    _remove(directory)
    os.rename(tmp, directory)
    _fsync_dir(directory.parent)


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed write (safetensors wraps them in Rust's)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    found = re.search(r'message: "([^"]+)"', str(exc))
    return found.group(1) if found else str(exc)[:200]


def read(directory: Path, *, what: str = "sparknet checkpoint") -> WeightsDir:
    """Reads a weights directory; a missing or corrupt file is one DataError naming it."""
    directory = Path(directory)
    for name in (MODEL_FILE, STATE_FILE, META_FILE):
        if not (directory / name).is_file():
            raise DataError(f"{directory} holds no {what}: {name} is missing")
    try:
        meta = json.loads((directory / META_FILE).read_text())
        contents = WeightsDir(load_file(str(directory / MODEL_FILE)),
                              load_file(str(directory / STATE_FILE)), meta)
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"{what} {directory} cannot be read ({exc}): it is corrupt; write it "
                        "again, or resume from an earlier one") from None
    if not isinstance(meta, dict):
        raise DataError(f"{directory / META_FILE} holds {type(meta).__name__}, not a JSON "
                        f"object: the {what} is corrupt")
    return contents


def flat_from_tensors(layout: FlatLayout, tensors: dict[str, np.ndarray], *,
                      origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Named tensors -> flat buffers: every tensor is consumed and must match its shape."""
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


def named_tensors(layout: FlatLayout, floats: np.ndarray,
                  ints: np.ndarray) -> dict[str, np.ndarray]:
    """Flat buffers -> named tensors (copies), the inverse of ``flat_from_tensors``."""
    out: dict[str, np.ndarray] = {}
    for e in layout.floats:
        out[e.name] = floats[e.offset: e.offset + e.size].reshape(e.shape).copy()
    for e in layout.ints:
        out[e.name] = ints[e.offset: e.offset + e.size].reshape(e.shape).copy()
    return out


def check_checkpoints_folder(run_dir: Path) -> Path:
    """``RUN_DIR/checkpoints``, refused if it is a link (checked before a run starts too)."""
    folder = Path(run_dir) / "checkpoints"
    if folder.is_symlink():
        raise DataError(f"{folder} is a symbolic link: sparknet writes checkpoints only inside "
                        "the run directory; make it a real folder (or link the whole run "
                        "directory instead)")
    return folder


def save_checkpoint(run_dir: Path, contents: WeightsDir, *, round_index: int,
                    keep: int = 2) -> Path:
    """Writes ``checkpoints/round-NNNNNN``, points ``LATEST`` at it, keeps the newest ``keep``."""
    folder = check_checkpoints_folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"round-{round_index:06d}"
    write(target, contents)
    try:
        atomic_write_text(folder / LATEST, target.name)
    except OSError as exc:
        raise DataError(f"cannot write {folder / LATEST} ({_reason(exc)}): free space there; "
                        "LATEST still names the previous checkpoint") from None
    _fsync_dir(folder)  # the renamed LATEST survives a crash too
    for old in _retired(folder, round_index, keep):
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".round-*.tmp-*"):  # left by writers killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    return target


def _retired(folder: Path, round_index: int, keep: int) -> list[Path]:
    """The checkpoints to delete after writing round ``round_index``: by round number, all but
    this one and the ``keep - 1`` before it. A later round is not this run's (a run counts
    up; one resumed from LATEST redoes what came after it), so it goes too."""
    rounds = sorted((int(p.name[6:]), p) for p in folder.glob("round-*")
                    if _CHECKPOINT_NAME.fullmatch(p.name))
    kept = [p for r, p in rounds if r <= round_index][-keep:]
    return [p for _, p in rounds if p not in kept]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``LATEST`` names; it must be a ``round-NNNNNN`` folder beside it."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not _CHECKPOINT_NAME.fullmatch(name):
        raise DataError(f"{pointer} names {name[:80]!r}, not a checkpoint of this run "
                        "(round-NNNNNN): the run directory was changed; resume from a "
                        "checkpoint inside it")
    return pointer.parent / name


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Replaces ``path`` with ``text`` so that a crash leaves the old or the new content.

    A link at ``path`` is replaced, not written through.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        with open_new(tmp) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def open_new(path: Path, *, append: bool = False) -> Any:
    """Opens a file for writing without following a link at ``path`` (a link out of the run
    directory would make sparknet overwrite a file elsewhere): ELOOP becomes a DataError."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_EXCL)
    try:
        return os.fdopen(os.open(path, flags, 0o644), "a" if append else "w")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path} is a symbolic link: sparknet does not write through links "
                            "in a run directory; remove it") from None
        raise


def replace_link(path: Path) -> None:
    """Removes a link where sparknet is about to write a file of its own."""
    if path.is_symlink():
        path.unlink()


def _remove(path: Path) -> None:
    """Removes a folder, or a link in its place (never the folder a link points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
