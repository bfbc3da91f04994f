"""``sparknet.train``: the round loop on Spark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparknet.config import TrainConfig
from sparknet.data.placement import SparkData
from sparknet.engine.defaults import resolve_epoch_tau
from sparknet.engine.frame_runner import FrameRunner
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.run_dir import TrainResult
from sparknet.engine.runner import Runner
from sparknet.engine.spark_runner import SparkRunner
from sparknet.errors import ConfigError
from sparknet.models.kinds import ModelKind
from sparknet.models.registry import model_of, resolve_model
from sparknet.models.zoo import ModelFactory


def train(data: SparkData, *, config: TrainConfig,
          model: ModelFactory | ModelKind | None = None, run_dir: str | Path | None = None,
          resume: bool = False, progress: bool = True, tau_decisions: list[int] | None = None,
          stop: Callable[[dict[str, Any]], bool] | None = None,
          state_dir: str | Path | None = None,
          on_record: Callable[[dict[str, Any]], None] | None = None,
          eval_name: str = "test") -> TrainResult:
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
    config = resolve_epoch_tau(config, data.train_sizes)
    options = LoopOptions(run_dir=Path(run_dir) if run_dir is not None else None, resume=resume,
                          progress=progress, tau_decisions=tuple(tau_decisions or ()), stop=stop,
                          on_record=on_record, eval_name=eval_name)
    return run_rounds(runner_for(data, device=config.engine.device, state_dir=state_dir),
                      config=config, model=kind, spec=data.spec, options=options)


# The runner each placement names (``PlacedShards.runner``).
RUNNERS: dict[str, Callable[..., Runner]] = {"rdd": SparkRunner, "frame": FrameRunner}


def runner_for(data: SparkData, *, device: str,
               state_dir: str | Path | None = None) -> Runner:
    """The runner the data's placement names: RDD jobs, or DataFrame jobs (Spark Connect)."""
    return RUNNERS[data.train.runner](data.train, test=data.test, device=device,
                                      state_dir=state_dir)

