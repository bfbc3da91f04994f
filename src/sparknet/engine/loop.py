"""The SparkNet round loop, written once: broadcast, local steps, combine, outer step.

``run_rounds`` drives any ``Runner`` (Spark tasks or in-process virtual workers): it owns the
driver's ``TrainState``, the tau schedule, the non-finite policy, evaluation, metrics records
and checkpoints. ``sparknet.train`` and ``sparknet.simulate`` differ only in their runner.
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparknet import weights_dir
from sparknet.config import TrainConfig, config_from_file, first_difference
from sparknet.data.shards import InputSpec
from sparknet.engine.aggregate import apply_round
from sparknet.engine.early_stop import EarlyStopping
from sparknet.engine.local_steps import LocalPlan, WorkerResult
from sparknet.engine.runner import Runner
from sparknet.engine.state import TrainState
from sparknet.engine.tau import FixedTau, RoundTiming, TauPolicy, TauSchedule
from sparknet.errors import ConfigError, DataError, TrainingError
from sparknet.flat import FlatLayout, flatten_state, load_flat_state
from sparknet.metrics import MetricsLog, plot_metrics
from sparknet.models.kinds import InputPrep, LocalOptimizer, ModelKind, network_outputs
from sparknet.models.objectives import Objective, resolve_objective

Record = dict[str, Any]


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


def initial_state(model: ModelKind, seed: int) -> tuple[FlatLayout, np.ndarray, np.ndarray]:
    """The network's initial weights, a function of the seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = model.build()
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    return layout, floats, ints


def parameter_mask(model: ModelKind, layout: FlatLayout) -> np.ndarray:
    """True where the flat buffer holds a trainable parameter (not a running statistic)."""
    names = {name for name, _ in model.build().named_parameters()}
    mask = np.zeros(layout.num_floats, dtype=bool)
    for entry in layout.floats:
        if entry.name in names:
            mask[entry.offset: entry.offset + entry.size] = True
    return mask


def tau_policy(config: TrainConfig) -> TauPolicy:
    if config.engine.tau == "auto":
        from sparknet.engine.auto_tau import AutoTau

        return AutoTau()
    return FixedTau(config.engine.tau)


@dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """How one call drives the loop (none of this changes the weights)."""

    run_dir: Path | None = None
    resume: bool = False
    progress: bool = False
    tau_decisions: tuple[int, ...] = ()
    stop: Callable[[Record], bool] | None = None
    eval_every: int | None = None  # overrides config.engine.eval_every
    on_record: Callable[[Record], None] | None = None  # progress reports, after each round


def run_rounds(runner: Runner, *, config: TrainConfig, model: ModelKind, spec: InputSpec,
               options: LoopOptions) -> TrainResult:
    """Trains ``model`` for ``config.engine.rounds`` rounds on ``runner``'s workers."""
    if runner.num_workers != config.engine.num_workers:
        raise ConfigError(f"the data has {runner.num_workers} shards but num_workers="
                          f"{config.engine.num_workers}: build the data with the same K")
    run, state = _Run.prepare(runner, config=config, model=model, spec=spec, options=options)
    stopper = _early_stopping(config, runner, run.objective)  # checked before any job
    warmup_started = runner.now()
    shared = state.for_workers()
    runner.start(model, state_bytes=shared.floats.nbytes + shared.ints.nbytes +
                 (0 if shared.momentum is None else shared.momentum.nbytes))
    warmup_seconds = runner.now() - warmup_started
    bar = _progress_bar(config.engine.rounds, state.round_index, enabled=options.progress)
    started = runner.now() - state.wall_seconds
    stopped_early = False
    try:
        while state.round_index < config.engine.rounds:
            state, record = run.one_round(state)
            record["wall_seconds"] = runner.now() - started
            state = replace(state, wall_seconds=record["wall_seconds"])
            run.keep(state, record)
            bar.update(1)
            bar.set_postfix(_postfix(record, run.records), refresh=False)
            if options.on_record is not None:
                options.on_record(record)
            if stopper is not None and stopper.observe(record, state.floats, state.ints):
                stopped_early = True
                break
            if options.stop is not None and options.stop(record):
                break
    except BaseException:
        bar.close()
        # After a Ctrl-C mid-call the JVM connection is gone: cleaning up must not replace
        # the error being raised with one about the cleanup.
        with contextlib.suppress(Exception):
            runner.close()
        raise
    bar.close()
    runner.close()
    floats, ints = state.floats, state.ints
    if stopper is not None and stopper.best_floats is not None and stopper.best_ints is not None:
        floats, ints = stopper.best_floats, stopper.best_ints
    result = TrainResult(config=config, layout=run.layout, floats=floats, ints=ints,
                         metrics=run.records, run_dir=run.run_path, source=model,
                         warmup_seconds=warmup_seconds,
                         tau_decisions=list(run.schedule.decisions),
                         best_round=None if stopper is None else stopper.best_round,
                         stopped_early=stopped_early, spec=spec)
    if run.run_path is not None:
        write_result(run.run_path, result)
    return result


@dataclass
class _Run:
    """What stays fixed while the rounds run, and the one round they repeat."""

    runner: Runner
    config: TrainConfig
    model: ModelKind
    optimizer: LocalOptimizer
    prep: InputPrep
    layout: FlatLayout
    mask: np.ndarray
    schedule: TauSchedule
    eval_every: int
    run_path: Path | None
    log: MetricsLog | None
    records: list[Record]
    objective: Objective

    @classmethod
    def prepare(cls, runner: Runner, *, config: TrainConfig, model: ModelKind,
                spec: InputSpec, options: LoopOptions) -> tuple[_Run, TrainState]:
        """The fixed parts and the starting state (restored from a checkpoint on resume)."""
        optimizer, prep = model.local_optimizer(config.optimizer), model.input_prep(spec)
        objective = resolve_objective(config.objective)
        outputs = network_outputs(model, spec.shape, expected=spec.num_classes)
        objective.check_outputs(outputs, network=model.key)
        layout, floats, ints = initial_state(model, config.seed)
        state = TrainState.initial(config, floats, ints)
        run_path, log = _open_run(options, config)
        if run_path is not None and options.resume:
            state = _restore(run_path, config, layout, fresh=state)
        if log is not None:
            log.load_existing(up_to_round=state.round_index)
        schedule = TauSchedule(tau_policy(config),
                               list(state.tau_decisions or options.tau_decisions))
        eval_every = config.engine.eval_every if options.eval_every is None else options.eval_every
        run = cls(runner, config, model, optimizer, prep, layout, parameter_mask(model, layout),
                  schedule, eval_every, run_path, log, log.records if log is not None else [],
                  objective)
        return run, state

    def one_round(self, state: TrainState) -> tuple[TrainState, Record]:
        """Broadcast, K workers' local steps, ordered sum, outer step; then evaluation."""
        engine = self.config.engine
        tau = self.schedule.tau_for(state.round_index)
        plan = LocalPlan(seed=self.config.seed, round_index=state.round_index,
                         step_offset=state.step_offset, tau=tau, batch_size=engine.batch_size,
                         optimizer=self.optimizer, input_prep=self.prep,
                         compression=self.config.outer.compression,
                         sample_weight=self.config.outer.name == "weighted",
                         threads=engine.threads_per_worker, objective=self.objective,
                         precision=engine.precision, channels_last=engine.channels_last)
        round_started = self.runner.now()
        try:
            total = self.runner.run_round(state.for_workers(), plan, fan_in=engine.tree_fan_in)
        except TrainingError as exc:
            raise TrainingError(f"{exc}{_kept(self.run_path)}") from exc
        updated = apply_round(self.config.outer, state, total, self.mask)
        if updated is None and engine.on_non_finite == "stop":
            raise TrainingError(
                f"round {state.round_index}: the training loss or update became NaN/infinite; "
                "lower the learning rate, or set engine.on_non_finite='skip' to drop such "
                f"updates.{_kept(self.run_path)}")
        state = replace(updated or state, round_index=state.round_index + 1,
                        step_offset=state.step_offset + tau,
                        samples=state.samples + total.samples,
                        tau_decisions=tuple(self.schedule.decisions))
        round_seconds = self.runner.now() - round_started
        self.schedule.observe(RoundTiming(tau, round_seconds, total.compute_seconds))
        record = _round_record(state, total, tau, round_seconds, updated is not None)
        if not self.objective.is_classifier:
            record["train_accuracy"] = None
        if _due(state.round_index, self.eval_every, engine.rounds) and \
                self.runner.has_test_data:
            loss, accuracy = self.runner.evaluate(state.for_workers(), self.prep,
                                                  batch_size=engine.eval_batch_size,
                                                  threads=engine.threads_per_worker,
                                                  objective=self.objective)
            record.update(test_loss=loss,
                          test_accuracy=accuracy if self.objective.is_classifier else None)
        return state, record

    def keep(self, state: TrainState, record: Record) -> None:
        """Logs the round's record and writes a checkpoint when one is due."""
        if self.log is not None:
            self.log.append(record)
        else:
            self.records.append(record)
        if self.run_path is not None and _due(state.round_index, self.config.checkpoint_every,
                                              self.config.engine.rounds):
            contents = state.to_weights_dir(self.layout, _meta(self.config, self.model))
            weights_dir.save_checkpoint(self.run_path, contents, round_index=state.round_index)


def _early_stopping(config: TrainConfig, runner: Runner,
                    objective: Objective) -> EarlyStopping | None:
    engine = config.engine
    if engine.patience == 0:
        return None
    if not runner.has_test_data:
        raise ConfigError(f"patience={engine.patience} needs validation data to watch: give "
                          "validation rows (validationIndicatorCol) or set patience to 0")
    if engine.monitor == "accuracy" and not objective.is_classifier:
        raise ConfigError(f"monitor='accuracy' but objective {config.objective!r} is not a "
                          "classifier: monitor 'loss'")
    return EarlyStopping(engine.patience, engine.monitor)


def _open_run(options: LoopOptions, config: TrainConfig) -> tuple[Path | None, MetricsLog | None]:
    if options.run_dir is None:
        if options.resume:
            raise ConfigError("resume=True needs run_dir: the folder whose checkpoints to resume")
        return None, None
    run_path = Path(options.run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    weights_dir.atomic_write_text(run_path / "config.json",
                                  json.dumps(config.to_dict(), indent=2))
    return run_path, MetricsLog(run_path / "metrics.jsonl")


def _kept(run_path: Path | None) -> str:
    latest = weights_dir.latest_checkpoint(run_path) if run_path is not None else None
    if latest is None:
        return " No checkpoint was written yet." if run_path is not None else ""
    return f" The last good checkpoint is kept: {latest}."


def _due(completed_rounds: int, every: int, total_rounds: int) -> bool:
    return completed_rounds == total_rounds or (every > 0 and completed_rounds % every == 0)


def _round_record(state: TrainState, total: WorkerResult, tau: int, seconds: float,
                  applied: bool) -> Record:
    return {
        "round": state.round_index,
        "tau": tau,
        "samples": state.samples,
        "steps_per_worker": state.step_offset,
        "round_seconds": seconds,
        "compute_seconds": total.compute_seconds,
        "overhead_seconds": max(0.0, seconds - total.compute_seconds),
        "train_loss": total.loss_sum / total.samples,
        "train_accuracy": total.correct / total.samples,
        "bytes_per_worker": total.bytes_sent // max(1, total.workers),
        "update_applied": applied,
        "test_loss": None,
        "test_accuracy": None,
    }


def _postfix(record: Record, records: list[Record]) -> dict[str, str]:
    rate = record["samples"] / max(record["wall_seconds"], 1e-9)
    accuracies = [r["test_accuracy"] for r in records if r.get("test_accuracy") is not None]
    post = {"samples/s": f"{rate:,.0f}", "loss": f"{record['train_loss']:.4f}"}
    if accuracies:
        post["test_acc"] = f"{100 * accuracies[-1]:.2f}%"
    return post


def _progress_bar(total: int, initial: int, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="round", unit="round", disable=not enabled,
                dynamic_ncols=True)


def versions() -> dict[str, str]:
    import sparknet

    found = {"sparknet": sparknet.__version__, "torch": torch.__version__,
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


def check_resumable(run_dir: Path, config: TrainConfig, model: ModelKind) -> int:
    """Checks, before any Spark job, that ``run_dir``'s latest checkpoint can continue with
    ``config``; returns the number of rounds it has done. Raises one-line errors."""
    layout, floats, ints = initial_state(model, config.seed)
    return _restore(Path(run_dir), config, layout,
                    fresh=TrainState.initial(config, floats, ints)).round_index


def _restore(run_path: Path, config: TrainConfig, layout: FlatLayout,
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


def write_result(run_path: Path, result: TrainResult) -> None:
    """The run's result: final weights (safetensors), metadata (JSON), exports and a plot."""
    meta = {**_meta(result.config, result.source),
            "final_test_accuracy": result.final_accuracy,
            "input": None if result.spec is None else result.spec.to_dict(),
            "tau_decisions": [r["tau"] for r in result.metrics],
            "final": result.metrics[-1] if result.metrics else None}
    tensors = weights_dir.named_tensors(result.layout, result.floats, result.ints)
    weights_dir.write(run_path / "final", weights_dir.WeightsDir(tensors, {}, meta))
    result.source.write_exports(result.model(), run_path / "final")
    if result.metrics:
        plot_metrics(result.metrics, run_path / "metrics.png",
                     title=f"{result.config.model}, K={result.config.engine.num_workers}, "
                           f"tau={result.config.engine.tau}")
