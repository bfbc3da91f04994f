"""A run directory, written and read in one place, and the result it holds.

``config.json``, ``metrics.jsonl``, ``checkpoints/round-NNNNNN/`` and ``final/`` (weights as
safetensors, metadata as JSON, the model kind's exports) plus ``metrics.png``. The round loop
calls the writers; ``load_result``, resuming and the CLI's checks before Spark call the
readers, so what is written and what is checked on the way back cannot drift apart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import sparknet.weights_dir as weights_dir
from sparknet.config import TrainConfig, config_from_file, first_difference
from sparknet.data.shards import InputSpec
from sparknet.engine.state import TrainState, initial_state
from sparknet.errors import ConfigError, DataError, MissingDependencyError
from sparknet.flat import FlatLayout, load_flat_state
from sparknet.metrics import MetricsLog, plot_metrics, read_records
from sparknet.models.kinds import ModelKind
from sparknet.models.registry import resolve_saved_model
from sparknet.models.zoo import ModelFactory
from sparknet.version import __version__

Record = dict[str, Any]
_log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The trained state, its layout and the per-round metrics."""

    config: TrainConfig
    layout: FlatLayout
    floats: np.ndarray
    ints: np.ndarray
    metrics: list[Record]
    run_dir: Path | None
    source: ModelKind = field(repr=False)
    warmup_seconds: float = 0.0  # the one-off preparation before round 0
    tau_decisions: list[int] = field(default_factory=list)
    best_round: int | None = None  # early stopping: the round whose weights these are
    stopped_early: bool = False
    spec: InputSpec | None = None  # what the network was trained on (None: an older run)

    def model(self) -> nn.Module:
        """A fresh network on the CPU holding the trained weights."""
        module = self.source.build()
        load_flat_state(module, self.layout, self.floats, self.ints)
        return module.eval()

    @property
    def final_accuracy(self) -> float | None:
        evaluated = [r["test_accuracy"] for r in self.metrics if r.get("test_accuracy") is not None]
        return evaluated[-1] if evaluated else None


# -- ownership ----------------------------------------------------------------------------------

LOCK_FILE = ".sparknet-lock"
# run directory (resolved) -> [open lock file, holders in this process]
_HELD: dict[str, list[Any]] = {}


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Holds ``RUN_DIR/.sparknet-lock`` (an ``fcntl`` lock) for the run's life: a second
    process writing the same run directory is refused in one line. Re-entrant within a
    process (the CLI takes it before Spark starts, the round loop again); the kernel drops it
    when the process dies, so a killed run can be resumed."""
    key = os.path.realpath(run_dir)
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
    else:
        _HELD[key] = [_acquire(Path(run_dir)), 1]
    try:
        yield
    finally:
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            entry[0].close()  # releases the lock


def _acquire(run_dir: Path) -> Any:
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot lock the run directory {run_dir} ({exc.strerror or exc}): "
                          "choose another output folder") from None
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        owner = handle.read().strip()[:40]
        handle.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise ConfigError(f"the run directory {run_dir} is in use by another sparknet run"
                              f"{f' (pid {owner})' if owner.isdigit() else ''}: wait for it "
                              "to finish or choose another output folder") from None
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


# -- writing ----------------------------------------------------------------------------------

def open_run(run_dir: Path | None, config: TrainConfig, *,
             resume: bool) -> tuple[Path | None, MetricsLog | None]:
    """Creates the run directory with its ``config.json``; ``(None, None)`` without one."""
    if run_dir is None:
        if resume:
            raise ConfigError("resume=True needs run_dir: the folder whose checkpoints to resume")
        return None, None
    run_path = Path(run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    weights_dir.check_checkpoints_folder(run_path)  # refused now, not at the first checkpoint
    weights_dir.atomic_write_text(run_path / "config.json",
                                  json.dumps(config.to_dict(), indent=2))
    return run_path, MetricsLog(run_path / "metrics.jsonl")


def write_checkpoint(run_path: Path, state: TrainState, *, layout: FlatLayout,
                     config: TrainConfig, model: ModelKind) -> None:
    """``checkpoints/round-NNNNNN/`` for the state after ``state.round_index`` rounds."""
    contents = state.to_weights_dir(layout, _meta(config, model))
    weights_dir.save_checkpoint(run_path, contents, round_index=state.round_index)


def write_result(run_path: Path, result: TrainResult) -> None:
    """The run's result: final weights (safetensors), metadata (JSON), exports and a plot
    (skipped with one warning when matplotlib is not installed)."""
    meta = {**_meta(result.config, result.source),
            "final_test_accuracy": result.final_accuracy,
            "input": None if result.spec is None else result.spec.to_dict(),
            "tau_decisions": [r["tau"] for r in result.metrics],
            "final": result.metrics[-1] if result.metrics else None}
    tensors = weights_dir.named_tensors(result.layout, result.floats, result.ints)
    weights_dir.write(run_path / "final", weights_dir.WeightsDir(tensors, {}, meta))
    result.source.write_exports(result.model(), run_path / "final")
    if result.metrics:
        try:
            plot_metrics(result.metrics, run_path / "metrics.png",
                         title=f"{result.config.model}, K={result.config.engine.num_workers}, "
                               f"tau={result.config.engine.tau}")
        except MissingDependencyError as exc:
            # The plot only draws metrics.jsonl: a run is whole without it, so say so and go on.
            _log.warning("metrics.png not written: %s", exc)


def kept_note(run_path: Path | None) -> str:
    """The sentence a training error ends with: which checkpoint survives, if any."""
    latest = weights_dir.latest_checkpoint(run_path) if run_path is not None else None
    if latest is None:
        return " No checkpoint was written yet." if run_path is not None else ""
    return f" The last good checkpoint is kept: {latest}."


def versions() -> dict[str, str]:
    found = {"sparknet": __version__, "torch": torch.__version__,
             "numpy": np.__version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version

        found["pyspark"] = version("pyspark")
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    return found


def _meta(config: TrainConfig, model: ModelKind) -> Record:
    return {"config": config.to_dict(), "model_key": model.key,
            "rng": {"kind": "counter-based", "seed": config.seed,
                    "note": "every random draw is derived from (seed, round, partition)"},
            "versions": versions()}


# -- reading ----------------------------------------------------------------------------------

def load_result(run_dir: str | Path, *,
                model: ModelFactory | ModelKind | None = None) -> TrainResult:
    """Loads a run's final result (no unpickling) and rebuilds the network.

    A run trained on a factory needs ``model`` (the same factory) unless this process named
    it already: loading never imports code the run's files name.
    """
    final = weights_dir.read(Path(run_dir) / "final", what="finished sparknet run")
    config = config_from_file(final.meta.get("config"),
                              origin=str(Path(run_dir) / "final" / weights_dir.META_FILE))
    ref = str(config.model)[:80]
    kind = resolve_saved_model(config.model, origin=f"run {run_dir}", given=model,
                               args=config.model_args,
                               fix=f"pass the factory again (load_result(run_dir, model={ref!r})"
                                   f", or --model {ref} on the command line) or call "
                                   f"sparknet.models.trust_factory({ref!r}) first")
    layout = FlatLayout.of(kind.build())
    floats, ints = weights_dir.flat_from_tensors(layout, final.tensors, origin=str(run_dir))
    metrics = read_records(Path(run_dir) / "metrics.jsonl")
    taus = final.meta.get("tau_decisions", [])
    if not isinstance(taus, list) or not all(type(t) is int and t >= 1 for t in taus):
        raise DataError(f"{Path(run_dir) / 'final' / weights_dir.META_FILE}: tau_decisions is "
                        "not a list of step counts: the run directory was changed")
    given = final.meta.get("input")
    spec = None if given is None else InputSpec.from_dict(
        given, origin=str(Path(run_dir) / "final" / weights_dir.META_FILE))
    return TrainResult(config=config, layout=layout, floats=floats, ints=ints,
                       metrics=metrics, run_dir=Path(run_dir), source=kind,
                       tau_decisions=list(taus), spec=spec)


def check_resumable(run_dir: Path, config: TrainConfig, model: ModelKind) -> int:
    """Checks, before any Spark job, that ``run_dir``'s latest checkpoint can continue with
    ``config``; returns the number of rounds it has done. Raises one-line errors."""
    layout, floats, ints = initial_state(model, config.seed)
    return restore(Path(run_dir), config, layout,
                   fresh=TrainState.initial(config, floats, ints)).round_index


def restore(run_path: Path, config: TrainConfig, layout: FlatLayout,
            fresh: TrainState) -> TrainState:
    """The state of the run's latest checkpoint, checked field by field against this run."""
    latest = weights_dir.latest_checkpoint(run_path)
    if latest is None:
        raise ConfigError(f"cannot resume: {run_path} has no checkpoint (checkpoints/LATEST); "
                          "start a new run without --resume")
    contents = weights_dir.read(latest)
    origin = str(latest / weights_dir.META_FILE)
    saved = config_from_file(contents.meta.get("config"), origin=origin)
    if replace(saved, engine=replace(saved.engine, rounds=config.engine.rounds)) != config:
        field_name = first_difference(saved.to_dict(), config.to_dict(), skip={"engine.rounds"})
        raise ConfigError(f"cannot resume {run_path}: its {field_name} differs from this "
                          "run's (only engine.rounds may change); resume with the saved "
                          "config.json")
    state = TrainState.from_weights_dir(contents, layout, origin=str(latest))
    _check_progress(state, fresh, config, latest)
    return state


def _check_progress(state: TrainState, fresh: TrainState, config: TrainConfig,
                    latest: Path) -> None:
    """A checkpoint's counters and optimizer tensors must agree with its name and the plan."""
    origin = latest / weights_dir.META_FILE
    done = state.round_index
    if latest.name != f"round-{done:06d}":
        raise DataError(f"{origin}: round {done} does not match the checkpoint's name "
                        f"{latest.name}: the run directory was changed; resume from a "
                        "checkpoint sparknet wrote")
    if done > config.engine.rounds:
        raise ConfigError(f"the run already did {done} rounds, more than rounds="
                          f"{config.engine.rounds}: give --rounds {done} or more to resume it")
    taus = state.tau_decisions
    if len(taus) < done or min(taus, default=1) < 1 or sum(taus[:done]) != state.step_offset \
            or state.samples < 0 or not 0 <= state.wall_seconds < float("inf"):
        raise DataError(f"{origin}: step_offset, samples, wall_seconds or tau_decisions do not "
                        f"fit {done} rounds: the checkpoint was changed; resume from one "
                        "sparknet wrote")
    overlapped = config.engine.overlap != "off" and done > 0
    carries = state.carries or ()
    lagging = state.lagging
    if overlapped != (lagging is not None) or \
            len(carries) != (config.engine.num_workers if overlapped else 0) or \
            any(c.shape != fresh.floats.shape or c.dtype != fresh.floats.dtype
                for c in carries) or \
            (lagging is not None and (lagging.floats.shape != fresh.floats.shape or
                                      lagging.ints.shape != fresh.ints.shape)):
        raise DataError(f"{latest / weights_dir.STATE_FILE}: the overlapped rounds' tensors "
                        f"(overlap_*) do not fit overlap={config.engine.overlap} with "
                        f"{config.engine.num_workers} workers: the checkpoint was changed")
    for name, found, expected in (
            ("worker_momentum", state.momentum, fresh.momentum),
            ("outer_momentum", state.outer.momentum, fresh.outer.momentum)):
        found_shape = None if found is None else (found.shape, found.dtype)
        expected_shape = None if expected is None else (expected.shape, expected.dtype)
        if found_shape != expected_shape:
            raise DataError(f"{latest / weights_dir.STATE_FILE}: tensor {name} is "
                            f"{_describe(found_shape)}, this run needs "
                            f"{_describe(expected_shape)}: the checkpoint was changed")


def _describe(shape: tuple[Any, Any] | None) -> str:
    return "absent" if shape is None else f"{shape[1]} of shape {shape[0]}"
