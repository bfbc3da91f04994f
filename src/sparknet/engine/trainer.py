"""The SparkNet round loop on the driver: broadcast, local steps, aggregate, outer step.

The driver holds the state as one flat float32 buffer. Each round is an ordinary Spark job;
everything else here (outer optimizer, checkpoints, metrics) is plain Python on the driver.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sparknet import checkpoint
from sparknet.averaging import OuterState, init_outer_state
from sparknet.config import TrainConfig
from sparknet.data.sources import SparkData
from sparknet.engine.aggregate import DriverState, apply_round
from sparknet.engine.local_steps import LocalPlan, RoundState, WorkerResult
from sparknet.engine.spark_rounds import evaluate, train_round, warm_up
from sparknet.engine.tau import FixedTau, RoundTiming, TauPolicy, TauSchedule
from sparknet.errors import ConfigError, TrainingError
from sparknet.flat import FlatLayout, flatten_state, load_flat_state, state_tensors
from sparknet.metrics import MetricsLog, plot_metrics
from sparknet.models.registry import ModelFactory, ModelSource, model_source

if TYPE_CHECKING:
    from pyspark import Broadcast, SparkContext


@dataclass
class TrainResult:
    """The trained state, its layout and the per-round metrics."""

    config: TrainConfig
    layout: FlatLayout
    floats: np.ndarray
    ints: np.ndarray
    metrics: list[dict[str, Any]]
    run_dir: Path | None
    source: ModelSource = field(repr=False)
    warmup_seconds: float = 0.0  # the one-off job before round 0 (workers, shards, networks)

    def model(self) -> nn.Module:
        """A fresh network on the CPU holding the trained weights."""
        module = self.source.build()
        load_flat_state(module, self.layout, self.floats, self.ints)
        return module.eval()

    @property
    def final_accuracy(self) -> float | None:
        evaluated = [r["test_accuracy"] for r in self.metrics if r.get("test_accuracy") is not None]
        return evaluated[-1] if evaluated else None


@dataclass
class _Progress:
    round_index: int = 0
    step_offset: int = 0
    wall_offset: float = 0.0
    samples: int = 0
    tau_decisions: list[int] = field(default_factory=list)


def initial_state(source: ModelSource, seed: int) -> tuple[FlatLayout, np.ndarray, np.ndarray]:
    """The network's initial weights, a function of the seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = source.build()
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    return layout, floats, ints


def parameter_mask(source: ModelSource, layout: FlatLayout) -> np.ndarray:
    """True where the flat buffer holds a trainable parameter (not a running statistic)."""
    names = {name for name, _ in source.build().named_parameters()}
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


def train(data: SparkData, *, config: TrainConfig, model: ModelFactory | None = None,
          run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          tau_decisions: list[int] | None = None,
          stop: Callable[[dict[str, Any]], bool] | None = None) -> TrainResult:
    """Trains ``config.model`` (or the ``model`` factory) on ``data`` with SparkNet's rounds.

    With ``run_dir``, writes metrics, checkpoints and the final result there; ``resume``
    continues from its latest checkpoint and ends with the same weights as an undisturbed run.
    ``tau_decisions`` replays the per-round tau of an earlier run (its ``final/state.json``).
    ``stop`` ends training early after a round whose metrics record it returns True for
    (e.g. a target test accuracy reached).
    """
    if data.num_workers != config.engine.num_workers:
        raise ConfigError(f"the data has {data.num_workers} shards but num_workers="
                          f"{config.engine.num_workers}: build the data with the same K")
    source = model_source(model if model is not None else config.model)
    run_path = Path(run_dir) if run_dir is not None else None
    layout, floats, ints = initial_state(source, config.seed)
    mask = parameter_mask(source, layout)
    outer = init_outer_state(config.outer, layout.num_floats)
    momentum = (np.zeros(layout.num_floats, np.float32)
                if config.optimizer.momentum_policy == "average" else None)
    done = _Progress()
    log: MetricsLog | None = None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        (run_path / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        log = MetricsLog(run_path / "metrics.jsonl")
        if resume:
            floats, ints, outer, momentum, done = _restore(run_path, config, layout)
        log.load_existing(up_to_round=done.round_index)
    elif resume:
        raise ConfigError("resume=True needs run_dir: the folder whose checkpoints to resume")

    schedule = TauSchedule(tau_policy(config),
                           list(done.tau_decisions or tau_decisions or []))
    sc: SparkContext = data.train.context
    engine = config.engine
    records = log.records if log is not None else []
    warmup_started = time.perf_counter()
    try:
        warm_up(data.train, source, test=data.test)
    except Exception as exc:
        raise TrainingError("preparing the workers (loading shards, building the network) "
                            f"failed after Spark's retries: {worker_error_summary(exc)}") from None
    warmup_seconds = time.perf_counter() - warmup_started
    bar = _progress_bar(engine.rounds, done.round_index, enabled=progress)
    state_bc = sc.broadcast(RoundState(floats, ints, momentum))
    started = time.perf_counter() - done.wall_offset
    try:
        while done.round_index < engine.rounds:
            round_index = done.round_index
            plan = _plan(config, data, round_index, done.step_offset,
                         schedule.tau_for(round_index))
            round_started = time.perf_counter()
            total = _run_round(data, state_bc, plan, source, config, run_path)
            update = apply_round(config.outer, DriverState(floats, ints, momentum, outer), total,
                                 mask)
            finite = update is not None
            if update is not None:
                floats, ints, momentum, outer = update
            elif engine.on_non_finite == "stop":
                raise TrainingError(
                    f"round {round_index}: the training loss or update became NaN/infinite; "
                    "lower the learning rate, or set engine.on_non_finite='skip' to drop such "
                    "updates. The last good checkpoint is kept.")
            done = replace(done, round_index=round_index + 1,
                           step_offset=done.step_offset + plan.tau,
                           samples=done.samples + total.samples,
                           tau_decisions=list(schedule.decisions))
            next_bc = sc.broadcast(RoundState(floats, ints, momentum))
            state_bc.destroy()
            state_bc = next_bc
            round_seconds = time.perf_counter() - round_started
            schedule.observe(RoundTiming(plan.tau, round_seconds, total.compute_seconds))
            record = _round_record(done, total, plan, round_seconds, finite)
            if _due(done.round_index, engine.eval_every, engine.rounds) and data.test is not None:
                loss, accuracy, _ = evaluate(data.test, state_bc, data.spec, source,
                                             device=engine.device,
                                             batch_size=engine.eval_batch_size,
                                             threads=engine.threads_per_worker)
                record.update(test_loss=loss, test_accuracy=accuracy)
            record["wall_seconds"] = time.perf_counter() - started
            done = replace(done, wall_offset=record["wall_seconds"])
            if log is not None:
                log.append(record)
            else:
                records.append(record)
            if run_path is not None and _due(done.round_index, config.checkpoint_every,
                                             engine.rounds):
                _save(run_path, config, layout, floats, ints, outer, momentum, done, source)
            bar.update(1)
            bar.set_postfix(_postfix(record, records), refresh=False)
            if stop is not None and stop(record):
                break
    finally:
        bar.close()
        state_bc.destroy()

    result = TrainResult(config=config, layout=layout, floats=floats, ints=ints,
                         metrics=records, run_dir=run_path, source=source,
                         warmup_seconds=warmup_seconds)
    if run_path is not None:
        write_result(run_path, result)
    return result


def _run_round(data: SparkData, state_bc: Broadcast[RoundState], plan: LocalPlan,
               source: ModelSource, config: TrainConfig, run_path: Path | None) -> WorkerResult:
    """One round's Spark job; a round that fails on every retry becomes one clear error."""
    try:
        return train_round(data.train, state_bc, plan, source, device=config.engine.device,
                           fan_in=config.engine.tree_fan_in)
    except Exception as exc:
        if isinstance(exc, TrainingError):
            raise
        kept = ""
        if run_path is not None:
            latest = checkpoint.latest_checkpoint(run_path)
            kept = f" The last good checkpoint is kept: {latest}." if latest else ""
        raise TrainingError(f"round {plan.round_index} failed after Spark's retries; the "
                            f"worker's error: {worker_error_summary(exc)}.{kept}") from None


def worker_error_summary(exc: BaseException) -> str:
    """The last exception line of a worker's Python traceback inside a Spark error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    candidates = [line for line in lines
                  if ("Error" in line or "Exception" in line) and not line.startswith("at ")
                  and "Traceback" not in line and not line.startswith("File ")]
    for line in reversed(candidates):
        if not line.startswith(("org.apache", "py4j", "pyspark.errors", "An exception")):
            return line[:500]
    return (lines[-1] if lines else type(exc).__name__)[:500]


def _plan(config: TrainConfig, data: SparkData, round_index: int, step_offset: int,
          tau: int) -> LocalPlan:
    return LocalPlan(seed=config.seed, round_index=round_index, step_offset=step_offset,
                     tau=tau, batch_size=config.engine.batch_size,
                     optimizer=config.optimizer, input_spec=data.spec,
                     compression=config.outer.compression,
                     sample_weight=config.outer.name == "weighted",
                     threads=config.engine.threads_per_worker)


def _due(completed_rounds: int, every: int, total_rounds: int) -> bool:
    return completed_rounds == total_rounds or (every > 0 and completed_rounds % every == 0)


def _round_record(done: _Progress, total: WorkerResult, plan: LocalPlan, seconds: float,
                  finite: bool) -> dict[str, Any]:
    return {
        "round": done.round_index,
        "tau": plan.tau,
        "samples": done.samples,
        "round_seconds": seconds,
        "compute_seconds": total.compute_seconds,
        "overhead_seconds": max(0.0, seconds - total.compute_seconds),
        "train_loss": total.loss_sum / total.samples,
        "train_accuracy": total.correct / total.samples,
        "bytes_per_worker": total.bytes_sent // max(1, total.workers),
        "update_applied": finite,
        "test_loss": None,
        "test_accuracy": None,
    }


def _postfix(record: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, str]:
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
    import pyspark

    import sparknet

    return {"sparknet": sparknet.__version__, "torch": torch.__version__,
            "pyspark": pyspark.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _save(run_path: Path, config: TrainConfig, layout: FlatLayout, floats: np.ndarray,
          ints: np.ndarray, outer: OuterState, momentum: np.ndarray | None, done: _Progress,
          source: ModelSource) -> None:
    optimizer = dict(outer.tensors())
    if momentum is not None:
        optimizer["worker_momentum"] = momentum
    meta = {"round": done.round_index, "step_offset": done.step_offset,
            "samples": done.samples, "wall_seconds": done.wall_offset,
            "config": config.to_dict(), "model_key": source.key,
            "tau_decisions": done.tau_decisions,
            "rng": {"kind": "counter-based", "seed": config.seed,
                    "note": "every random draw is derived from (seed, round, partition)"},
            "versions": versions()}
    tensors = {k: v.numpy() for k, v in state_tensors(layout, floats, ints).items()}
    checkpoint.save_checkpoint(run_path, checkpoint.Snapshot(tensors, optimizer, meta),
                               round_index=done.round_index)


def _restore(run_path: Path, config: TrainConfig, layout: FlatLayout) -> tuple[
        np.ndarray, np.ndarray, OuterState, np.ndarray | None, _Progress]:
    latest = checkpoint.latest_checkpoint(run_path)
    if latest is None:
        raise ConfigError(f"cannot resume: {run_path} has no checkpoint (checkpoints/LATEST); "
                          "start a new run without --resume")
    snap = checkpoint.read_snapshot(latest)
    saved = TrainConfig.from_dict(snap.meta["config"])
    if replace(saved, engine=replace(saved.engine, rounds=config.engine.rounds)) != config:
        raise ConfigError(f"cannot resume {run_path}: its configuration differs from this one "
                          "(only engine.rounds may change); resume with the saved config.json")
    floats, ints = _unflatten_named(layout, snap.tensors)
    outer = OuterState.from_tensors({k: v for k, v in snap.optimizer.items()
                                     if k.startswith("outer_")})
    momentum = snap.optimizer.get("worker_momentum")
    meta = snap.meta
    return floats, ints, outer, momentum, _Progress(meta["round"], meta["step_offset"],
                                                    meta["wall_seconds"], meta["samples"],
                                                    list(meta["tau_decisions"]))


def _unflatten_named(layout: FlatLayout, tensors: dict[str, np.ndarray]) -> tuple[
        np.ndarray, np.ndarray]:
    expected = {e.name for e in layout.floats + layout.ints}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ConfigError(f"checkpoint does not fit the model: missing {missing}, extra {extra}")
    floats = np.empty(layout.num_floats, np.float32)
    ints = np.empty(layout.num_ints, np.int64)
    for entries, target in ((layout.floats, floats), (layout.ints, ints)):
        for e in entries:
            if tensors[e.name].shape != e.shape:
                raise ConfigError(f"checkpoint tensor {e.name} has shape "
                                  f"{tensors[e.name].shape}, the model expects {e.shape}")
            target[e.offset: e.offset + e.size] = tensors[e.name].reshape(-1)
    return floats, ints


def write_result(run_path: Path, result: TrainResult) -> None:
    """The run's result: final weights (safetensors), metadata (JSON) and a plot (PNG)."""
    tensors = {k: v.numpy() for k, v in state_tensors(result.layout, result.floats,
                                                       result.ints).items()}
    meta = {"config": result.config.to_dict(), "model_key": result.source.key,
            "final_test_accuracy": result.final_accuracy,
            "tau_decisions": [r["tau"] for r in result.metrics],
            "final": result.metrics[-1] if result.metrics else None, "versions": versions()}
    checkpoint.write_snapshot(run_path / "final", checkpoint.Snapshot(tensors, {}, meta))
    if result.source.key.startswith("caffe:"):  # also as files Caffe itself reads
        from sparknet.models.caffe_ref import write_caffe_files

        write_caffe_files(result.model(), run_path / "final")
    if result.metrics:
        plot_metrics(result.metrics, run_path / "metrics.png",
                     title=f"{result.config.model}, K={result.config.engine.num_workers}, "
                           f"tau={result.config.engine.tau}")


def load_result(run_dir: str | Path, *, model: ModelFactory | None = None) -> TrainResult:
    """Loads a run's final result (no unpickling) and rebuilds the network."""
    snap = checkpoint.read_snapshot(Path(run_dir) / "final")
    config = TrainConfig.from_dict(snap.meta["config"])
    source = model_source(model if model is not None else config.model)
    layout = FlatLayout.of(source.build())
    floats, ints = _unflatten_named(layout, snap.tensors)
    metrics_path = Path(run_dir) / "metrics.jsonl"
    metrics = ([json.loads(line) for line in metrics_path.read_text().splitlines()]
               if metrics_path.is_file() else [])
    return TrainResult(config=config, layout=layout, floats=floats, ints=ints,
                       metrics=metrics, run_dir=Path(run_dir), source=source)
