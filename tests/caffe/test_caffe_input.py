"""A Caffe Data layer's transform_param prepares the input identically in every path.

``sparknet.train`` and ``sparknet train`` (CLI) against a hand-written loop over the same
reference batches (``sparknet.caffe.transform.transform_batch``), and ``SparkNetEstimator``
fit and transform against the same reference; and a Caffe run whose solver file has moved
still loads and resumes bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparknet.caffe.transform import TransformConfig, transform_batch
from sparknet.cli.main import main
from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec, split_into_shards
from sparknet.data.sources import from_arrays
from sparknet.engine.local_steps import batch_indices, stream_seed
from sparknet.engine.run_dir import load_result
from sparknet.engine.state import initial_state
from sparknet.engine.trainer import train
from sparknet.flat import flatten_state, load_flat_state
from sparknet.models.registry import resolve_model

pytestmark = pytest.mark.spark
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SCALE = 0.00390625
RANDOM = TransformConfig(scale=SCALE, mean_value=(33.0,), crop_size=24, mirror=True)
FIXED = TransformConfig(scale=SCALE, mean_value=(33.0,))
ROWS, SEED, TAU, BATCH, LR = 200, 4, 3, 8, 0.01


def _definition(lenet: Path, folder: Path, transform: TransformConfig, name: str) -> Path:
    """LeNet's train_test net with another TRAIN transform_param."""
    text = lenet.read_text()
    param = f"scale: {SCALE}\n    mean_value: 33"
    if transform.crop_size:
        param += f"\n    crop_size: {transform.crop_size}\n    mirror: true"
    text = text.replace("transform_param {\n    scale: 0.00390625\n  }",
                        f"transform_param {{\n    {param}\n  }}", 1)
    assert "mean_value" in text
    path = folder / name
    path.write_text(text)
    return path


def _reference_weights(net: str, features: np.ndarray, labels: np.ndarray,
                       transform: TransformConfig) -> np.ndarray:
    """TAU plain SGD steps of one worker, the batches transformed by transform_batch."""
    model = resolve_model(net)
    layout, floats, ints = initial_state(model, SEED)
    module = model.build()
    load_flat_state(module, layout, floats, ints)
    shard = split_into_shards(features, labels, 1, seed=SEED)[0]
    optimizer = torch.optim.SGD(module.parameters(), lr=LR, momentum=0.0)
    rng = np.random.default_rng(stream_seed(SEED, 3, 0, 0))
    for batch in batch_indices(num_examples=len(shard), batch_size=BATCH, steps=TAU,
                               step_offset=0, seed=SEED, partition=0):
        x = transform_batch(shard.features[batch], transform, train=True, rng=rng)
        optimizer.zero_grad()
        F.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(shard.labels[batch])
                        ).backward()
        optimizer.step()
    return flatten_state(module, layout)[0]


def _config(net: str) -> TrainConfig:
    return TrainConfig(model=net, seed=SEED, checkpoint_every=0,
                       engine=EngineConfig(num_workers=1, tau=TAU, batch_size=BATCH, rounds=1,
                                           eval_every=0),
                       optimizer=OptimizerConfig(lr=LR, momentum=0.0),
                       outer=OuterConfig(name="average"))


def test_train_and_cli_apply_crop_mirror_and_mean(spark: Any, fashion: Any, tmp_path: Path,
                                                   lenet_files: tuple[Path, Path]) -> None:
    net = f"caffe:{_definition(lenet_files[1], tmp_path, RANDOM, 'random.prototxt')}#1,24,24"
    features, labels = fashion["train"].images[:ROWS], fashion["train"].labels[:ROWS]
    expected = _reference_weights(net, features, labels, RANDOM)
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    data = from_arrays(spark.sparkContext, train=(features, labels), test=None, spec=spec,
                       num_workers=1, seed=SEED)
    try:
        result = train(data, config=_config(net), progress=False)
    finally:
        data.release()
    assert np.abs(result.floats - expected).max() <= 1e-6

    assert main(["train", "--model", net, "--seed", str(SEED), "--num-workers", "1", "--tau",
                 str(TAU), "--batch-size", str(BATCH), "--rounds", "1", "--eval-every", "0",
                 "--lr", str(LR), "--momentum", "0", "--checkpoint-every", "0",
                 "--outer", "average", "--train-limit", str(ROWS), "--test-limit", "100",
                 "--data-dir", str(FASHION_DIR), "--output", str(tmp_path / "cli"),
                 "--no-progress"]) == 0
    np.testing.assert_array_equal(load_result(tmp_path / "cli").floats, result.floats)


def test_estimator_fit_and_transform_apply_the_transform(spark: Any, fashion: Any,
                                                         tmp_path: Path,
                                                         lenet_files: tuple[Path, Path]) -> None:
    import pandas as pd

    from sparknet.ml import SparkNetEstimator

    net = f"caffe:{_definition(lenet_files[1], tmp_path, FIXED, 'fixed.prototxt')}#1,28,28"
    split = fashion["train"]
    features, labels = split.images[:ROWS], split.labels[:ROWS]
    df = spark.createDataFrame(pd.DataFrame({
        "features": list(features.reshape(ROWS, -1).astype(np.float64)),
        "label": labels.astype(np.float64)})).coalesce(1)
    # One step over the whole shard: the same gradient whatever order the rows are in.
    estimator = SparkNetEstimator(network=net, inputShape=[1, 28, 28], inputScale=0.5,
                                  numWorkers=1, tau=1, batchSize=ROWS, rounds=1,
                                  learningRate=LR, momentum=0.0, seed=SEED,
                                  outerOptimizer="average")
    fitted = estimator.fit(df)
    model = resolve_model(net)
    layout, floats, ints = initial_state(model, SEED)
    module = model.build()
    load_flat_state(module, layout, floats, ints)
    reference = torch.from_numpy(transform_batch(features, FIXED, train=True,
                                                 rng=np.random.default_rng(0)))
    F.cross_entropy(module(reference), torch.from_numpy(labels)).backward()
    torch.optim.SGD(module.parameters(), lr=LR).step()
    expected = flatten_state(module, layout)[0]
    assert np.abs(fitted.saved_network.floats - expected).max() <= 1e-5

    rows = fitted.transform(df.limit(32)).select("probability").collect()
    scored = np.stack([r.probability.toArray() for r in rows])
    trained = fitted.network_module()
    with torch.no_grad():
        direct = torch.softmax(trained(reference[:32]), dim=1).numpy()
    np.testing.assert_allclose(scored, direct, atol=1e-6)


def test_caffe_run_loads_and_resumes_after_its_solver_moved(spark: Any, tmp_path: Path,
                                                           solver_copy: Path) -> None:
    common = ["--num-workers", "2", "--tau", "4", "--train-limit", "600", "--test-limit",
              "100", "--data-dir", str(FASHION_DIR), "--checkpoint-every", "1",
              "--eval-every", "0", "--no-progress"]
    solver = ["train", "--caffe-solver", str(solver_copy), *common]
    assert main([*solver, "--rounds", "3", "--output", str(tmp_path / "whole")]) == 0
    assert main([*solver, "--rounds", "2", "--output", str(tmp_path / "part")]) == 0
    solver_copy.rename(tmp_path / "moved.prototxt")

    assert load_result(tmp_path / "part").config.optimizer.name == "caffe"
    assert main(["train", "--resume", str(tmp_path / "part"), "--rounds", "3", *common]) == 0
    for name in ("model.safetensors", "model.caffemodel"):
        assert (tmp_path / "part" / "final" / name).read_bytes() == (
            tmp_path / "whole" / "final" / name).read_bytes()
