"""``sparknet.train``: the round loop on Spark, and ``load_result`` for a finished run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparknet import weights_dir
from sparknet.config import TrainConfig, config_from_file
from sparknet.data.placement import SparkData
from sparknet.data.shards import InputSpec
from sparknet.engine.frame_runner import FrameRunner
from sparknet.engine.loop import LoopOptions, TrainResult, run_rounds
from sparknet.engine.runner import Runner
from sparknet.engine.spark_runner import SparkRunner
from sparknet.errors import ConfigError, DataError
from sparknet.flat import FlatLayout
from sparknet.metrics import read_records
from sparknet.models.kinds import ModelKind
from sparknet.models.registry import model_of, resolve_model, resolve_saved_model
from sparknet.models.zoo import ModelFactory


def train(data: SparkData, *, config: TrainConfig,
          model: ModelFactory | ModelKind | None = None, run_dir: str | Path | None = None,
          resume: bool = False, progress: bool = True, tau_decisions: list[int] | None = None,
          stop: Callable[[dict[str, Any]], bool] | None = None,
          state_dir: str | Path | None = None,
          on_record: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Trains ``config.model`` (or the ``model`` factory) on ``data`` with SparkNet's rounds.

    The runner follows the data's placement: Spark jobs with broadcasts on a classic session,
    DataFrame jobs on Spark Connect (where ``state_dir``, a folder every executor can read,
    carries the round's state when it is too large for the plan).

    With ``run_dir``, writes metrics, checkpoints and the final result there; ``resume``
    continues from its latest checkpoint and ends with the same weights as an undisturbed run.
    ``tau_decisions`` replays the per-round tau of an earlier run (its ``final/state.json``).
    ``stop`` ends training early after a round whose metrics record it returns True for
    (e.g. a target test accuracy reached). ``on_record`` receives each round's record (for
    progress reports).
    """
    kind = resolve_model(model) if model is not None else model_of(config)
    smallest, batch = min(data.train_sizes), config.engine.batch_size
    if smallest < batch:  # a worker would draw the same examples twice within a batch
        raise ConfigError(f"the smallest of the {data.num_workers} training shards holds "
                          f"{smallest} examples, fewer than one batch of {batch}: use more "
                          "data, fewer workers or a smaller batch_size")
    options = LoopOptions(run_dir=Path(run_dir) if run_dir is not None else None, resume=resume,
                          progress=progress, tau_decisions=tuple(tau_decisions or ()), stop=stop,
                          on_record=on_record)
    return run_rounds(runner_for(data, device=config.engine.device, state_dir=state_dir),
                      config=config, model=kind, spec=data.spec, options=options)


# The runner each placement names (``PlacedShards.runner``).
RUNNERS: dict[str, Callable[..., Runner]] = {"rdd": SparkRunner, "frame": FrameRunner}


def runner_for(data: SparkData, *, device: str,
               state_dir: str | Path | None = None) -> Runner:
    """The runner the data's placement names: RDD jobs, or DataFrame jobs (Spark Connect)."""
    return RUNNERS[data.train.runner](data.train, test=data.test, device=device,
                                      state_dir=state_dir)


def load_result(run_dir: str | Path, *,
                model: ModelFactory | ModelKind | None = None) -> TrainResult:
    """Loads a run's final result (no unpickling) and rebuilds the network.

    A run trained on a factory needs ``model`` (the same factory) unless this process named
    it already: loading never imports code the run's files name.
    """
    final = weights_dir.read(Path(run_dir) / "final", what="finished sparknet run")
    config = config_from_file(final.meta.get("config"),
                              origin=str(Path(run_dir) / "final" / weights_dir.META_FILE))
    kind = resolve_saved_model(config.model, origin=f"run {run_dir}", given=model,
                               args=config.model_args)
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
