"""The engine on a real local[2] Spark session, checked against single-process references."""

import numpy as np
import pytest
import torch

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.placement import SparkData
from sparknet.data.placements.memory import broadcast_shards
from sparknet.data.shards import InputSpec, Shard
from sparknet.data.sources import from_arrays
from sparknet.engine.aggregate import combine_in_order
from sparknet.engine.local_steps import WorkerResult, batch_indices
from sparknet.engine.spark_runner import tree_sum
from sparknet.engine.state import initial_state
from sparknet.engine.trainer import train
from sparknet.errors import ConfigError, TrainingError
from sparknet.flat import flatten_state, load_flat_state
from sparknet.models import LeNet, resolve_model

pytestmark = pytest.mark.spark
SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


def _data(spark, fashion, *, n_train=2000, n_test=500, k=2, seed=0):
    train_split, test_split = fashion["train"], fashion["test"]
    return from_arrays(spark.sparkContext,
                       train=(train_split.images[:n_train], train_split.labels[:n_train]),
                       test=(test_split.images[:n_test], test_split.labels[:n_test]),
                       spec=SPEC, num_workers=k, seed=seed)


def _config(**engine):
    values = dict(num_workers=2, tau=3, batch_size=16, rounds=2, eval_every=0)
    values.update(engine)
    return TrainConfig(outer=OuterConfig(name="average"), model="lenet", seed=5,
                       engine=EngineConfig(**values),
                       optimizer=OptimizerConfig(lr=0.05, momentum=0.9))


def test_one_round_of_tau_one_equals_sgd_on_the_concatenated_batch(spark, fashion):
    data = _data(spark, fashion)
    config = TrainConfig(outer=OuterConfig(name="average"), model="lenet", seed=5,
                         engine=EngineConfig(num_workers=2, tau=1, batch_size=32, rounds=1,
                                             eval_every=0),
                         optimizer=OptimizerConfig(lr=0.1, momentum=0.0))
    result = train(data, config=config, progress=False)

    layout, floats, ints = initial_state(resolve_model("lenet"), seed=5)
    shards = [data.train.broadcasts[k].value for k in range(2)]
    assert len(shards[0]) == len(shards[1])
    picks = [batch_indices(num_examples=len(s), batch_size=32, steps=1, step_offset=0, seed=5,
                           partition=k)[0] for k, s in enumerate(shards)]
    pairs = list(zip(shards, picks, strict=True))
    x = torch.from_numpy(np.concatenate([s.features[i] for s, i in pairs]))
    y = torch.from_numpy(np.concatenate([s.labels[i] for s, i in pairs]))
    model = LeNet()
    load_flat_state(model, layout, floats, ints)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(x.float() / 255), y).backward()
    optimizer.step()
    expected, _ = flatten_state(model, layout)
    assert np.abs(result.floats - expected).max() <= 1e-6


def test_same_seed_gives_identical_weights(spark, fashion):
    data = _data(spark, fashion)
    first = train(data, config=_config(), progress=False)
    second = train(data, config=_config(), progress=False)
    assert np.array_equal(first.floats, second.floats)
    other_seed = train(data, config=TrainConfig.from_dict({**_config().to_dict(), "seed": 6}),
                       progress=False)
    assert not np.array_equal(first.floats, other_seed.floats)


def test_training_on_released_data_is_one_clear_error(spark, fashion):
    data = _data(spark, fashion)
    data.release()
    with pytest.raises(TrainingError, match="preparing the workers") as info:
        train(data, config=_config(rounds=1), progress=False)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is not None  # the worker's error is kept for debugging


def test_a_failing_round_keeps_the_workers_error_as_its_cause(spark, fashion):
    data = _data(spark, fashion)
    try:
        with pytest.raises(TrainingError, match=r"round 0 failed .*boom") as info:
            train(data, config=_config(rounds=1), model=_exploding_net, progress=False)
    finally:
        data.release()
    assert "boom" in str(info.value.__cause__)


class _Exploding(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)

    def forward(self, x):
        if self.training:  # the driver's trial run (eval mode) passes; every training step fails
            raise ValueError("boom")
        return self.linear(x.flatten(1))


def _exploding_net():
    return _Exploding()


def test_a_task_retried_by_spark_gives_identical_weights(spark, fashion):
    """The first attempt of partition 1 fails in every round; Spark retries it."""

    def flaky_lenet():
        from pyspark import TaskContext

        from sparknet.models import LeNet

        context = TaskContext.get()
        if context is not None and context.partitionId() == 1 and context.attemptNumber() == 0:
            raise RuntimeError("injected failure on the first attempt")
        return LeNet()

    data = _data(spark, fashion)
    undisturbed = train(data, config=_config(), progress=False)
    retried = train(data, config=_config(), model=flaky_lenet, progress=False)
    assert np.array_equal(undisturbed.floats, retried.floats)


def test_unequal_shards_each_run_exactly_tau_steps(spark, fashion):
    images, labels = fashion["train"].images, fashion["train"].labels
    sc = spark.sparkContext
    tiny = SparkData(train=broadcast_shards(sc, [Shard(images[:10], labels[:10]),
                                                 Shard(images[10:400], labels[10:400])]),
                     test=None, spec=SPEC, train_sizes=(10, 390), test_size=0)
    with pytest.raises(ConfigError, match="holds 10 examples, fewer than one batch of 16"):
        train(tiny, config=_config(tau=4, rounds=2), progress=False)  # refused before any job
    shards = [Shard(images[:20], labels[:20]), Shard(images[20:400], labels[20:400])]
    data = SparkData(train=broadcast_shards(sc, shards), test=None, spec=SPEC,
                     train_sizes=(20, 380), test_size=0)
    result = train(data, config=_config(tau=4, rounds=2), progress=False)
    assert [r["samples"] for r in result.metrics] == [2 * 4 * 16, 2 * 2 * 4 * 16]
    assert np.isfinite(result.floats).all()


def test_averaged_momentum_with_one_worker_continues_like_one_process(spark, fashion):
    """K = 1 and momentum_policy=average: two rounds of tau steps == 2*tau plain steps."""
    data = _data(spark, fashion, k=1)
    config = TrainConfig(outer=OuterConfig(name="average"), model="lenet", seed=2,
                         engine=EngineConfig(num_workers=1, tau=3, batch_size=16, rounds=2,
                                             eval_every=0),
                         optimizer=OptimizerConfig(lr=0.05, momentum=0.9,
                                                   momentum_policy="average"))
    result = train(data, config=config, progress=False)

    layout, floats, ints = initial_state(resolve_model("lenet"), seed=2)
    model = LeNet()
    load_flat_state(model, layout, floats, ints)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    shard = data.train.broadcasts[0].value
    for batch in batch_indices(num_examples=len(shard), batch_size=16, steps=6, step_offset=0,
                               seed=2, partition=0):
        x = torch.from_numpy(shard.features[batch]).float() / 255
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(shard.labels[batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected, _ = flatten_state(model, layout)
    assert np.abs(result.floats - expected).max() <= 1e-6


def test_tree_sum_is_reproducible_and_equals_the_sum(spark):
    rng = np.random.default_rng(0)
    results = [(i, WorkerResult(delta=rng.standard_normal(1000).astype(np.float32), weight=1.0,
                                loss_sum=float(i), correct=i, samples=10,
                                ints_max=np.array([i]), momentum_sum=None, bytes_sent=4000))
               for i in range(7)]
    rdd = spark.sparkContext.parallelize(results, 7)
    first = tree_sum(rdd, num_partitions=7, fan_in=2)
    second = tree_sum(rdd, num_partitions=7, fan_in=2)
    assert np.array_equal(first.delta, second.delta)
    direct = combine_in_order(results)
    assert np.allclose(first.delta, direct.delta, atol=1e-5)
    assert (first.workers, first.samples, first.ints_max.tolist()) == (7, 70, [6])


def test_resumed_run_equals_an_undisturbed_run(spark, fashion, tmp_path):
    data = _data(spark, fashion)
    undisturbed = train(data, config=_config(rounds=3), progress=False)
    short = TrainConfig.from_dict({**_config(rounds=2).to_dict(), "checkpoint_every": 1})
    train(data, config=short, run_dir=tmp_path, progress=False)
    longer = TrainConfig.from_dict({**_config(rounds=3).to_dict(), "checkpoint_every": 1})
    resumed = train(data, config=longer, run_dir=tmp_path, resume=True, progress=False)
    assert np.array_equal(undisturbed.floats, resumed.floats)
    assert [r["round"] for r in resumed.metrics] == [1, 2, 3]
