"""Caffe-defined nets trained on Spark: the CLI with a real Caffe solver, the written
.caffemodel/deploy files, ONNX, the Estimator, and K=1 against a plain CaffeSolver loop."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from sparknet.caffe import export_onnx, load_net, load_solver, make_optimizer
from sparknet.caffe.weights import read_caffemodel
from sparknet.cli.main import main
from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec, split_into_shards
from sparknet.data.sources import from_arrays
from sparknet.engine.local_steps import batch_indices
from sparknet.engine.run_dir import load_result
from sparknet.engine.state import initial_state
from sparknet.engine.trainer import train
from sparknet.flat import FlatLayout, flatten_state, load_flat_state
from sparknet.models.registry import resolve_model

pytestmark = pytest.mark.spark

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SCALE = np.float32(0.00390625)  # LeNet's Data layer transform_param
TARGET_ACCURACY = 0.65  # 6 rounds x 10 steps x K=2 x 64 on 3,000 examples (73.6% measured)


@pytest.fixture(scope="module")
def cli_run(spark: Any, fashion: Any, lenet_files: tuple[Path, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sparknet train --caffe-solver` with the unmodified BVLC LeNet solver, K=2."""
    solver, net = lenet_files
    out = tmp_path_factory.mktemp("caffe-run")
    rc = main(["train", "--caffe-solver", str(solver), "--model", f"caffe:{net}",
               "--num-workers", "2", "--tau", "10", "--rounds", "6", "--train-limit", "3000",
               "--test-limit", "500", "--data-dir", str(FASHION_DIR), "--output", str(out),
               "--no-progress"])
    assert rc == 0
    return out


def test_cli_trains_lenet_with_the_caffe_solver(cli_run: Path) -> None:
    result = load_result(cli_run)
    assert result.config.optimizer.name == "caffe"
    assert result.config.engine.batch_size == 64  # the TRAIN Data layer's batch_size
    assert result.final_accuracy is not None and result.final_accuracy >= TARGET_ACCURACY
    losses = [r["train_loss"] for r in result.metrics]
    assert losses[-1] < losses[0]


def test_caffemodel_reloads_with_the_same_blobs_and_logits(cli_run: Path, fashion: Any) -> None:
    trained = load_result(cli_run).model()
    final = cli_run / "final"
    deploy = load_net(final / "deploy.prototxt", final / "model.caffemodel")
    expected = trained.net.caffe_blobs()
    written = read_caffemodel(final / "model.caffemodel")
    assert list(written) == list(expected) == ["conv1", "conv2", "ip1", "ip2"]
    for name, arrays in expected.items():
        assert [a.tobytes() for a in written[name]] == [a.tobytes() for a in arrays]
        assert [a.tobytes() for a in deploy.caffe_blobs()[name]] == [a.tobytes() for a in arrays]
    images = fashion["test"].images[:32].astype(np.float32) * SCALE
    with torch.no_grad():
        for image in images:  # the deploy file declares one example per forward
            x = torch.from_numpy(image[None])
            torch.testing.assert_close(deploy(x)["ip2"], trained(x), rtol=0, atol=0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_trained_caffe_net_exports_to_onnx(cli_run: Path, fashion: Any, tmp_path: Path) -> None:
    from sparknet.caffe import logits_model

    final = cli_run / "final"
    model = logits_model(final / "deploy.prototxt", final / "model.caffemodel").eval()
    export_onnx(model, tmp_path / "caffe.onnx")
    session = ort.InferenceSession(str(tmp_path / "caffe.onnx"))
    images = fashion["test"].images[:20].astype(np.float32) * SCALE
    worst = 0.0
    with torch.no_grad():
        for image in images:
            ours = torch.softmax(model(torch.from_numpy(image[None])), 1).numpy()
            theirs = _softmax(session.run(None, {"input": image[None]})[0])
            worst = max(worst, float(np.abs(ours - theirs).max()))
    assert worst <= 1e-4
    # The ML stage's exporter (dynamic batch, scaling inside the graph) takes the run too.
    assert main(["export-onnx", str(cli_run), str(tmp_path / "run.onnx"),
                 "--input-scale", str(float(SCALE))]) == 0
    pixels = fashion["test"].images[:50].astype(np.float32)
    probability = ort.InferenceSession(str(tmp_path / "run.onnx")).run(
        ["probability"], {"features": pixels})[0]
    with torch.no_grad():
        ours = torch.softmax(load_result(cli_run).model()(torch.from_numpy(pixels * SCALE)), 1)
    assert np.abs(probability - ours.numpy()).max() <= 1e-4


def test_caffe_inspect_prints_the_trained_weights(cli_run: Path, capsys: Any) -> None:
    assert main(["caffe", "inspect", str(cli_run / "final" / "model.caffemodel")]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "20x1x5x5" in out and "total parameters: 431,080" in out


def test_inspect_error_is_one_line(tmp_path: Path, capsys: Any) -> None:
    broken = tmp_path / "broken.caffemodel"
    broken.write_bytes(b"\x0a\xff\xff\xff")
    assert main(["caffe", "inspect", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparknet: error:") and "\n" not in err


def test_k1_engine_equals_a_caffe_solver_loop(spark: Any, fashion: Any,
                                              lenet_files: tuple[Path, Path],
                                              solver_copy: Path) -> None:
    """K=1, tau=4, 3 rounds with averaged momentum = 12 plain CaffeSolver steps (SGD,
    momentum 0.9, weight decay 5e-4, lr_policy inv) over the same batches."""
    _, net = lenet_files
    split = fashion["train"]
    features, labels = split.images[:300], split.labels[:300]
    config = TrainConfig(
        model=f"caffe:{net}#1,28,28", seed=3, checkpoint_every=0,
        engine=EngineConfig(num_workers=1, tau=4, batch_size=16, rounds=3, eval_every=0),
        optimizer=OptimizerConfig(name="caffe", caffe_solver=solver_copy.read_text(),
                                  momentum_policy="average"),
        outer=OuterConfig(name="average"))
    # The model kind applies the Data layer's transform_param (scale 1/256) itself.
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    data = from_arrays(spark.sparkContext, train=(features, labels), test=None, spec=spec,
                       num_workers=1, seed=3)
    try:
        result = train(data, config=config, progress=False)
    finally:
        data.release()

    source = resolve_model(config.model)
    layout, floats, ints = initial_state(source, config.seed)
    model = source.build()
    load_flat_state(model, layout, floats, ints)
    start = copy.deepcopy(flatten_state(model, layout)[0])
    shard = split_into_shards(features, labels, 1, seed=3)[0]
    solver = make_optimizer(model, load_solver(solver_copy))
    batches = batch_indices(num_examples=len(shard), batch_size=16, steps=12, step_offset=0,
                            seed=3, partition=0)
    for batch in batches:
        solver.zero_grad()
        x = torch.from_numpy(shard.features[batch].astype(np.float32) * SCALE)
        F.cross_entropy(model(x), torch.from_numpy(shard.labels[batch])).backward()
        solver.step()
    expected = flatten_state(model, FlatLayout.of(model))[0]
    assert np.abs(result.floats - expected).max() <= 1e-6
    assert np.abs(expected - start).max() > 1e-3


def test_estimator_fits_and_transforms_a_caffe_net(spark: Any, fashion: Any,
                                                   lenet_files: tuple[Path, Path]) -> None:
    import pandas as pd

    from sparknet.ml import SparkNetEstimator

    _, net = lenet_files
    split = fashion["train"]
    pixels = split.images[:200].reshape(200, -1).astype(np.float32)
    df = spark.createDataFrame(pd.DataFrame({"features": list(pixels),
                                             "label": split.labels[:200].astype(np.float64)}))
    estimator = SparkNetEstimator(network=f"caffe:{net}#1,28,28", inputShape=[1, 28, 28],
                                  inputScale=float(SCALE), numWorkers=2, tau=3, batchSize=16,
                                  rounds=1, learningRate=0.01)
    fitted = estimator.fit(df)
    rows = fitted.transform(df.limit(40)).select("features", "prediction").collect()
    assert estimator.last_result is not None
    trained = estimator.last_result.model()
    x = torch.from_numpy(np.stack([np.asarray(r.features, np.float32) for r in rows]) * SCALE)
    with torch.no_grad():
        expected = trained(x.reshape(-1, 1, 28, 28)).argmax(1).numpy()
    np.testing.assert_array_equal([int(r.prediction) for r in rows], expected)
