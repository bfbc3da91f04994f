"""Overlapped rounds (engine.overlap = 'decoupled' or 'eager') on a real local[2] session: the
same weights as the in-process runner (the simulator), through retries, missing carries and a
resume."""

from pathlib import Path

import numpy as np
import pytest
from pyspark import SparkFiles

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.data.sources import from_arrays
from sparknet.engine.local_steps import RoundState
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.overlap import CarryStore, own_share, start_state
from sparknet.engine.runner import InProcessRunner
from sparknet.engine.trainer import train
from sparknet.errors import ConfigError
from sparknet.models import resolve_model
from sparknet.simulate import simulate

pytestmark = pytest.mark.spark
SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
MODES = ["decoupled", "eager"]


def _arrays(fashion, n_train=2000, n_test=300):
    train_split, test_split = fashion["train"], fashion["test"]
    return ((train_split.images[:n_train], train_split.labels[:n_train]),
            (test_split.images[:n_test], test_split.labels[:n_test]))


def _config(**engine):
    values = dict(num_workers=2, tau=3, batch_size=16, rounds=5, eval_every=2,
                  overlap="eager")
    values.update(engine)
    return TrainConfig(model="lenet", seed=5, checkpoint_every=0,
                       engine=EngineConfig(**values),
                       optimizer=OptimizerConfig(lr=0.05, momentum=0.9, momentum_policy="reset"),
                       outer=OuterConfig(name="average"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("workers", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_overlapped_rounds_on_spark_equal_the_simulator(spark, fashion, workers, mode):
    (train_arrays, test_arrays) = _arrays(fashion)
    config = _config(num_workers=workers, overlap=mode)
    data = from_arrays(spark, train=train_arrays, test=test_arrays, spec=SPEC,
                       num_workers=workers, seed=config.seed)
    on_spark = train(data, config=config, progress=False)
    data.release()
    simulated = simulate(train_arrays, test=test_arrays, config=config, spec=SPEC)
    assert np.array_equal(on_spark.floats, simulated.floats)
    assert [r["test_accuracy"] for r in on_spark.metrics] == \
        [r["test_accuracy"] for r in simulated.records]
    assert [r["round"] for r in on_spark.metrics] == [1, 2, 3, 4, 5]
    assert [r["rerun_workers"] for r in on_spark.metrics] == [0] * 5  # one executor: all found


@pytest.mark.parametrize("mode", MODES)
def test_overlap_differs_from_synchronous_rounds_and_learns(fashion, mode):
    train_arrays, test_arrays = _arrays(fashion)
    overlapped = simulate(train_arrays, test=test_arrays, config=_config(rounds=8, overlap=mode),
                          spec=SPEC)
    synchronous = simulate(train_arrays, test=test_arrays,
                           config=_config(rounds=8, overlap="off"), spec=SPEC)
    assert not np.array_equal(overlapped.floats, synchronous.floats)
    final = overlapped.records[-1]["test_accuracy"]
    assert final > 0.6, f"overlapped rounds reached only {final:.3f}"
    assert final > synchronous.records[-1]["test_accuracy"] - 0.1


def test_missing_carries_are_rerun_with_the_drivers_copy(spark, fashion):
    """No carry can be written on the executor (its folder is a file): every task after round
    0 reports its carry missing and runs again with the driver's copy; same weights."""
    (train_arrays, test_arrays), config = _arrays(fashion), _config(overlap="decoupled")
    data = from_arrays(spark, train=train_arrays, test=test_arrays, spec=SPEC, num_workers=2,
                       seed=config.seed)
    blocker = Path(SparkFiles.getRootDirectory()) / "sparknet-carry"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    moved = blocker.with_name("sparknet-carry.moved")
    if blocker.is_dir():
        blocker.rename(moved)
    blocker.write_text("not a folder")
    try:
        rerun = train(data, config=config, progress=False)
    finally:
        blocker.unlink()
        if moved.exists():
            moved.rename(blocker)
        data.release()
    simulated = simulate(train_arrays, test=test_arrays, config=config, spec=SPEC)
    assert np.array_equal(rerun.floats, simulated.floats)
    assert [r["rerun_workers"] for r in rerun.metrics] == [0, 2, 2, 2, 2]


def test_a_retried_task_gives_identical_weights(spark, fashion):
    """Partition 1's first attempt fails in every round; Spark retries it."""

    def flaky_lenet():
        from pyspark import TaskContext

        from sparknet.models import LeNet

        context = TaskContext.get()
        if context is not None and context.partitionId() == 1 and context.attemptNumber() == 0:
            raise RuntimeError("injected failure on the first attempt")
        return LeNet()

    (train_arrays, test_arrays), config = _arrays(fashion), _config(eval_every=0)
    data = from_arrays(spark, train=train_arrays, test=test_arrays, spec=SPEC, num_workers=2,
                       seed=config.seed)
    undisturbed = train(data, config=config, progress=False)
    retried = train(data, config=config, model=flaky_lenet, progress=False)
    data.release()
    assert np.array_equal(undisturbed.floats, retried.floats)


def _in_process(train_arrays, config, run_dir, *, resume=False):
    runner = InProcessRunner(train_arrays, num_workers=config.engine.num_workers,
                             seed=config.seed)
    return run_rounds(runner, config=config, model=resolve_model("lenet"), spec=SPEC,
                      options=LoopOptions(run_dir=run_dir, resume=resume))


@pytest.mark.parametrize("mode", MODES)
def test_a_resumed_overlapped_run_equals_an_undisturbed_one(fashion, tmp_path, mode):
    train_arrays, _ = _arrays(fashion)
    undisturbed = _in_process(train_arrays, _config(rounds=5, eval_every=0, overlap=mode), None)
    first = TrainConfig.from_dict({**_config(rounds=3, eval_every=0, overlap=mode).to_dict(),
                                   "checkpoint_every": 1})
    _in_process(train_arrays, first, tmp_path)
    longer = TrainConfig.from_dict({**first.to_dict(),
                                    "engine": {**first.to_dict()["engine"], "rounds": 5}})
    resumed = _in_process(train_arrays, longer, tmp_path, resume=True)
    assert np.array_equal(undisturbed.floats, resumed.floats)
    assert [r["round"] for r in resumed.metrics] == [1, 2, 3, 4, 5]


def test_early_stopping_ends_an_overlapped_run_with_the_best_weights(fashion):
    train_arrays, test_arrays = _arrays(fashion)
    config = _config(rounds=12, eval_every=1, patience=1, monitor="accuracy")
    first = simulate(train_arrays, test=test_arrays, config=config, spec=SPEC)
    second = simulate(train_arrays, test=test_arrays, config=config, spec=SPEC)
    assert np.array_equal(first.floats, second.floats)
    assert all(r["test_accuracy"] is not None for r in first.records)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("change", "field"), [
    ({"engine": {"tau": "auto"}}, "tau"),
    ({"outer": OuterConfig(name="nesterov")}, "outer.name"),
    ({"optimizer": OptimizerConfig(momentum_policy="average")}, "optimizer.momentum_policy"),
])
def test_settings_overlap_cannot_honour_are_refused_in_one_line(change, field, mode):
    values = {"engine": EngineConfig(tau=5, overlap=mode),
              "outer": OuterConfig(name="average"),
              "optimizer": OptimizerConfig(momentum_policy="reset")}
    if "engine" in change:
        values["engine"] = EngineConfig(tau="auto", overlap=mode)
    else:
        values.update(change)
    with pytest.raises(ConfigError) as refused:
        TrainConfig(**values)
    message = str(refused.value)
    assert message.startswith(f"{field}=") and f"overlap={mode}" in message
    assert "\n" not in message


def test_a_carry_store_returns_only_whole_files(tmp_path):
    store = CarryStore(tmp_path / "carry", "token")
    change = np.arange(10, dtype=np.float32)
    store.started(4, 1)
    store.write(4, 1, change)
    assert np.array_equal(store.read(4, 1), change)
    path = next((tmp_path / "carry").glob("token-r0000004-p000001.f32"))
    raw = path.read_bytes()
    path.write_bytes(raw[:20] + b"\0" * 4 + raw[24:])  # damaged in place
    assert store.read(4, 1) is None
    store.started(5, 0)  # marked running by this (live) process, never written ...
    store.abandon(5, 0)  # ... then its task failed: nobody waits for it
    assert store.read(5, 0) is None
    assert store.clear() == 1


def test_a_carry_that_is_not_finite_is_not_added():
    base = RoundState(np.ones(3, np.float32), np.zeros(1, np.int64))
    assert start_state(base, np.array([np.nan, 1, 1], np.float32), 0.5) is base
    moved = start_state(base, np.array([2, 2, 2], np.float32), 0.5)
    assert np.array_equal(moved.floats, np.full(3, 2, np.float32))


def test_each_mode_adds_its_own_share_of_a_workers_last_change():
    """decoupled (CoCoD-SGD) resumes from the lagging average plus the whole own change: the
    mean of the round's starting points plus own progress; eager adds the 1/K share."""
    assert own_share("decoupled", 4) == 1.0
    assert own_share("eager", 4) == 0.25
    base = RoundState(np.array([1, 2], np.float32), np.zeros(1, np.int64))
    change = np.array([4, -8], np.float32)
    assert np.array_equal(start_state(base, change, own_share("decoupled", 4)).floats,
                          np.array([5, -6], np.float32))
    assert np.array_equal(start_state(base, change, own_share("eager", 4)).floats,
                          np.array([2, 0], np.float32))
