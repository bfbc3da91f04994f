"""The SparkNet round loop, written once: broadcast, local steps, combine, outer step.

``run_rounds`` drives any ``Runner`` (Spark tasks or in-process virtual workers): it owns the
driver's ``TrainState``, the tau schedule, the non-finite policy, evaluation, and when metrics
records and checkpoints are due (``engine/run_dir.py`` writes them). ``sparknet.train`` and
``sparknet.simulate`` differ only in their runner.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.config import TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.engine.aggregate import apply_round, tree_combine
from sparknet.engine.defaults import resolve_momentum_policy
from sparknet.engine.early_stop import EarlyStopping
from sparknet.engine.local_steps import LocalPlan, RoundState, WorkerResult
from sparknet.engine.overlap import CarryPlan, own_share, sent_change
from sparknet.engine.run_dir import (
    TrainResult,
    kept_note,
    open_run,
    restore,
    run_lock,
    write_checkpoint,
    write_result,
)
from sparknet.engine.runner import Evaluation, Runner, WorkerResults
from sparknet.engine.state import TrainState, starting_state
from sparknet.engine.tau import FixedTau, RoundTiming, TauPolicy, TauSchedule
from sparknet.errors import ConfigError, TrainingError
from sparknet.flat import FlatLayout
from sparknet.metrics import MetricsLog
from sparknet.models.kinds import InputPrep, LocalOptimizer, ModelKind, network_outputs
from sparknet.models.objectives import Objective, resolve_objective

Record = dict[str, Any]
Rounds = Generator[tuple["TrainState", Record], None, None]


def parameter_mask(model: ModelKind, layout: FlatLayout) -> np.ndarray:
    """True where the flat buffer holds a trainable parameter (not a running statistic)."""
    names = {name for name, _ in model.build().named_parameters()}
    mask = np.zeros(layout.num_floats, dtype=bool)
    for entry in layout.floats:
        if entry.name in names:
            mask[entry.offset: entry.offset + entry.size] = True
    return mask


def tau_policy(config: TrainConfig) -> TauPolicy:
    if config.engine.tau == "epoch":  # the entry points resolve it from the shard sizes
        raise ValueError("tau='epoch' reached the loop unresolved: call resolve_epoch_tau")
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
    eval_name: str = "test"  # the evaluated data's name in the bar (a fit's: "val")


def run_rounds(runner: Runner, *, config: TrainConfig, model: ModelKind, spec: InputSpec,
               options: LoopOptions) -> TrainResult:
    """Trains ``model`` for ``config.engine.rounds`` rounds on ``runner``'s workers, holding
    the run directory's lock throughout."""
    with contextlib.ExitStack() as stack:
        if options.run_dir is not None:
            stack.enter_context(run_lock(Path(options.run_dir)))
        return _run_rounds(runner, config=config, model=model, spec=spec, options=options)


def _run_rounds(runner: Runner, *, config: TrainConfig, model: ModelKind, spec: InputSpec,
                options: LoopOptions) -> TrainResult:
    if runner.num_workers != config.engine.num_workers:
        raise ConfigError(f"the data has {runner.num_workers} shards but num_workers="
                          f"{config.engine.num_workers}: build the data with the same K")
    config = resolve_momentum_policy(
        config, has_momentum=model.local_optimizer(config.optimizer).has_momentum)
    run, state = _Run.prepare(runner, config=config, model=model, spec=spec, options=options)
    stopper = _early_stopping(config, runner, run.objective)  # checked before any job
    warmup_started = runner.now()
    shared = state.for_workers()
    runner.start(model, state_bytes=shared.floats.nbytes + shared.ints.nbytes +
                 (0 if shared.momentum is None else shared.momentum.nbytes),
                 # overlapped rounds bring every worker's change to the driver
                 fan_in=(config.engine.num_workers if config.engine.overlap != "off"
                         else config.engine.tree_fan_in))
    warmup_seconds = runner.now() - warmup_started
    bar = _progress_bar(config.engine.rounds, state.round_index, enabled=options.progress)
    started = runner.now() - state.wall_seconds
    stopped_early = False
    rounds = run.overlapped(state) if config.engine.overlap != "off" else run.synchronous(state)
    try:
        for state, record in rounds:
            record["wall_seconds"] = runner.now() - started
            state = replace(state, wall_seconds=record["wall_seconds"])
            run.keep(state, record)
            bar.update(1)
            bar.set_postfix(_postfix(record, run.records, options.eval_name), refresh=False)
            if options.on_record is not None:
                options.on_record(record)
            if stopper is not None and stopper.observe(record, state.floats, state.ints):
                stopped_early = True
                break
            if options.stop is not None and options.stop(record):
                break
        rounds.close()  # an overlapped run cancels the rounds still in flight
    except BaseException:
        bar.close()
        # After a Ctrl-C mid-call the JVM connection is gone: cleaning up must not replace
        # the error being raised with one about the cleanup.
        with contextlib.suppress(Exception):
            rounds.close()
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
                         tau_decisions=list(run.schedule.decisions[:state.round_index]),
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
    spec: InputSpec

    @classmethod
    def prepare(cls, runner: Runner, *, config: TrainConfig, model: ModelKind,
                spec: InputSpec, options: LoopOptions) -> tuple[_Run, TrainState]:
        """The fixed parts and the starting state (restored from a checkpoint on resume)."""
        optimizer, prep = model.local_optimizer(config.optimizer), model.input_prep(spec)
        objective = resolve_objective(config.objective)
        outputs = network_outputs(model, spec.shape, expected=spec.num_classes)
        objective.check_outputs(outputs, network=model.key)
        if spec.row_weights:
            objective.check_row_weights()
        layout, state = starting_state(model, config)
        run_path, log = open_run(options.run_dir, config, resume=options.resume)
        if run_path is not None and options.resume:
            state = restore(run_path, config, layout, fresh=state)
        if log is not None:
            log.load_existing(up_to_round=state.round_index)
        schedule = TauSchedule(tau_policy(config),
                               list(state.tau_decisions or options.tau_decisions))
        eval_every = config.engine.eval_every if options.eval_every is None else options.eval_every
        run = cls(runner, config, model, optimizer, prep, layout, parameter_mask(model, layout),
                  schedule, eval_every, run_path, log, log.records if log is not None else [],
                  objective, spec)
        return run, state

    def plan(self, round_index: int, step_offset: int, tau: int) -> LocalPlan:
        engine = self.config.engine
        return LocalPlan(seed=self.config.seed, round_index=round_index,
                         step_offset=step_offset, tau=tau, batch_size=engine.batch_size,
                         optimizer=self.optimizer, input_prep=self.prep,
                         compression=self.config.outer.compression,
                         sample_weight=self.config.outer.name == "weighted",
                         threads=engine.threads_per_worker, objective=self.objective,
                         precision=engine.precision, channels_last=engine.channels_last,
                         row_weights=self.spec.row_weights, label_width=self.spec.label_width)

    def synchronous(self, state: TrainState) -> Rounds:
        """SparkNet's rounds: each starts from the average of the one before."""
        while state.round_index < self.config.engine.rounds:
            state, record = self.one_round(state)
            yield state, record

    def one_round(self, state: TrainState) -> tuple[TrainState, Record]:
        """Broadcast, K workers' local steps, ordered sum, outer step; then evaluation."""
        tau = self.schedule.tau_for(state.round_index)
        plan = self.plan(state.round_index, state.step_offset, tau)
        round_started = self.runner.now()
        try:
            total = self.runner.run_round(state.for_workers(), plan,
                                          fan_in=self.config.engine.tree_fan_in)
        except TrainingError as exc:
            raise TrainingError(f"{exc}{kept_note(self.run_path)}") from exc
        state, applied = self.advance(state, total, tau)
        round_seconds = self.runner.now() - round_started
        self.schedule.observe(RoundTiming(tau, round_seconds, total.compute_seconds))
        record = self.record(state, total, tau, round_seconds, applied)
        if self.evaluation_due(state):
            started = self.runner.now()
            loss, accuracy = self.runner.evaluate(state.for_workers(), self.prep,
                                                  **self.evaluation_settings())
            self.add_evaluation(record, (loss, accuracy, self.runner.now() - started))
        return state, record

    def overlapped(self, state: TrainState) -> Rounds:
        """Overlapped rounds (``engine.overlap``): round r's job is queued while round r - 1
        runs, from the weights of round r - 2 and each worker's own last change."""
        runner, end = self.runner, self.config.engine.rounds
        carry = CarryPlan(token=uuid.uuid4().hex[:12],
                          share=own_share(self.config.engine.overlap, runner.num_workers))
        flight: deque[tuple[LocalPlan, RoundState, Future[WorkerResults]]] = deque()
        offset = state.step_offset

        def submit(round_index: int, base: RoundState,
                   explicit: tuple[np.ndarray, ...] | None) -> None:
            nonlocal offset
            tau = self.schedule.tau_for(round_index)
            plan = self.plan(round_index, offset, tau)
            offset += tau
            flight.append((plan, base, runner.submit_round(base, plan, carry=carry,
                                                           explicit=explicit)))

        first = state.round_index
        if first == 0:
            submit(0, _weights_only(state), None)
        else:  # resumed: the round that was in flight, from the checkpoint's copy
            assert state.lagging is not None and state.carries is not None
            submit(first, state.lagging, state.carries)
        if first + 1 < end:
            submit(first + 1, _weights_only(state), None)
        waiting: deque[tuple[TrainState, Record, _QueuedEvaluation | None]] = deque()
        last = runner.now()
        try:
            while flight:
                plan, base, future = flight.popleft()
                try:
                    first_try = future.result()
                    results = self._complete(first_try, plan, base, carry, state.carries)
                except TrainingError as exc:
                    raise TrainingError(f"{exc}{kept_note(self.run_path)}") from exc
                total = tree_combine([r for _, r in results],
                                     fan_in=self.config.engine.tree_fan_in)
                lagging = _weights_only(state)
                state, applied = self.advance(state, total, plan.tau)
                state = replace(state, lagging=lagging,
                                carries=tuple(sent_change(r) for _, r in results))
                evaluation = None
                if self.evaluation_due(state):  # queued before the next round's job
                    evaluation = _QueuedEvaluation(
                        runner.submit_evaluation(state.for_workers(), self.prep,
                                                 **self.evaluation_settings()),
                        ahead=flight[0][2] if flight else None, clock=runner.now)
                if plan.round_index + 2 < end:
                    submit(plan.round_index + 2, _weights_only(state), None)
                now = runner.now()
                record = self.record(state, total, plan.tau, now - last, applied)
                # Workers whose carry was not on their executor and that ran again.
                record["rerun_workers"] = sum(1 for _, result in first_try if result is None)
                waiting.append((state, record, evaluation))
                last = now
                while waiting and (waiting[0][2] is None or waiting[0][2].done() or not flight):
                    done_state, record, pending = waiting.popleft()
                    if pending is not None:
                        self.add_evaluation(record, pending.evaluation())
                    yield done_state, record
        finally:
            runner.cancel()

    def _complete(self, results: WorkerResults, plan: LocalPlan, base: RoundState,
                  carry: CarryPlan, carries: tuple[np.ndarray, ...] | None
                  ) -> list[tuple[int, WorkerResult]]:
        """Every partition's result: those whose carry was missing run again, given it."""
        missing = tuple(index for index, result in results if result is None)
        found = [(index, result) for index, result in results if result is not None]
        if missing:
            assert carries is not None  # round 0 needs no carry, later ones know the last
            again = self.runner.submit_round(base, plan, explicit=carries,
                                             carry=replace(carry, partitions=missing))
            found += [(index, result) for index, result in again.result()
                      if result is not None]
        if len(found) != self.runner.num_workers:
            raise TrainingError(f"round {plan.round_index}: {len(found)} of "
                                f"{self.runner.num_workers} workers reported a result")
        return sorted(found, key=lambda item: item[0])

    def advance(self, state: TrainState, total: WorkerResult,
                tau: int) -> tuple[TrainState, bool]:
        """The state after a round's ordered sum; whether its update was applied."""
        updated = apply_round(self.config.outer, state, total, self.mask)
        if updated is None and self.config.engine.on_non_finite == "stop":
            raise TrainingError(
                f"round {state.round_index}: the training loss or update became NaN/infinite; "
                "lower the learning rate, or set engine.on_non_finite='skip' to drop such "
                f"updates.{kept_note(self.run_path)}")
        round_index = state.round_index + 1
        return replace(updated or state, round_index=round_index,
                       step_offset=state.step_offset + tau,
                       samples=state.samples + total.samples,
                       tau_decisions=tuple(self.schedule.decisions[:round_index])), \
            updated is not None

    def record(self, state: TrainState, total: WorkerResult, tau: int, seconds: float,
               applied: bool) -> Record:
        record = _round_record(state, total, tau, seconds, applied)
        if not self.objective.is_classifier:
            record["train_accuracy"] = None
        return record

    def evaluation_due(self, state: TrainState) -> bool:
        return _due(state.round_index, self.eval_every, self.config.engine.rounds) and \
            self.runner.has_test_data

    def evaluation_settings(self) -> dict[str, Any]:
        engine = self.config.engine
        return {"batch_size": engine.eval_batch_size, "threads": engine.threads_per_worker,
                "objective": self.objective}

    def add_evaluation(self, record: Record, evaluation: Evaluation) -> None:
        loss, accuracy, seconds = evaluation
        record.update(test_loss=loss, eval_seconds=seconds,
                      test_accuracy=accuracy if self.objective.is_classifier else None)

    def keep(self, state: TrainState, record: Record) -> None:
        """Logs the round's record and writes a checkpoint when one is due."""
        if self.log is not None:
            self.log.append(record)
        else:
            self.records.append(record)
        if self.run_path is not None and _due(state.round_index, self.config.checkpoint_every,
                                              self.config.engine.rounds):
            write_checkpoint(self.run_path, state, layout=self.layout, config=self.config,
                             model=self.model)


class _QueuedEvaluation:
    """An evaluation job queued behind a training job: its seconds are those it ran, not
    those it waited (the overlapped loop's records, like the synchronous ones, say how long
    the evaluation itself took)."""

    def __init__(self, future: Future[Evaluation], *, ahead: Future[Any] | None,
                 clock: Callable[[], float]) -> None:
        self.future = future
        self._clock = clock
        self._submitted = clock()
        self._done: dict[str, float] = {}
        if ahead is not None:
            ahead.add_done_callback(self._noting("ahead"))
        future.add_done_callback(self._noting("self"))

    def _noting(self, name: str) -> Callable[[Future[Any]], None]:
        def note(_: Future[Any]) -> None:
            self._done.setdefault(name, self._clock())

        return note

    def done(self) -> bool:
        return self.future.done()

    def evaluation(self) -> Evaluation:
        loss, accuracy, seconds = self.future.result()
        began = max(self._submitted, self._done.get("ahead", self._submitted))
        ran = self._done.get("self", self._clock()) - began  # callbacks run after result()
        return loss, accuracy, max(0.0, min(seconds, ran))


def _weights_only(state: TrainState) -> RoundState:
    """The state's weights as a round's base (overlapped rounds send no momentum)."""
    return RoundState(state.floats, state.ints)


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
        "eval_seconds": None,  # how long the evaluation job took, when there was one
    }


def _postfix(record: Record, records: list[Record], eval_name: str = "test"
             ) -> dict[str, str]:
    rate = record["samples"] / max(record["wall_seconds"], 1e-9)
    accuracies = [r["test_accuracy"] for r in records if r.get("test_accuracy") is not None]
    post = {"samples/s": f"{rate:,.0f}", "loss": f"{record['train_loss']:.4f}"}
    if accuracies:
        post[f"{eval_name}_acc"] = f"{100 * accuracies[-1]:.2f}%"
    return post


def _progress_bar(total: int, initial: int, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="round", unit="round", disable=not enabled,
                dynamic_ncols=True)
