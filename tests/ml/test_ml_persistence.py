"""Saved networks (safetensors + JSON), ONNX export, Params -> TrainConfig; no Spark jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file, save_file

from sparknet.errors import ConfigError, DataError
from sparknet.flat import FlatLayout, flatten_state
from sparknet.ml import SparkNetEstimator
from sparknet.ml.onnx_export import export_onnx, serving_network
from sparknet.ml.persistence import (
    META_FILE,
    TENSORS_FILE,
    SavedNetwork,
    local_path,
    read_network,
    write_network,
)
from sparknet.models.kinds import network_outputs
from sparknet.models.registry import resolve_model
from sparknet.models.zoo import SmallCNN


def _saved(seed: int = 0) -> SavedNetwork:
    torch.manual_seed(seed)
    module = SmallCNN()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so they must survive too
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.num_batches_tracked.fill_(7)
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    return SavedNetwork(network="cnn", input_shape=(1, 28, 28), num_classes=10,
                        input_scale=1 / 255, layout=layout, floats=floats, ints=ints)


def test_saved_network_round_trips_exactly(tmp_path: Path) -> None:
    saved = _saved()
    write_network(tmp_path, saved)
    back = read_network(tmp_path)
    np.testing.assert_array_equal(back.floats, saved.floats)
    np.testing.assert_array_equal(back.ints, saved.ints)
    assert (back.network, back.input_shape, back.num_classes, back.input_scale) == (
        "cnn", (1, 28, 28), 10, 1 / 255)
    assert back.token == saved.token != _saved(seed=1).token
    assert not list(tmp_path.glob("*.pkl"))


def test_missing_or_misshapen_tensors_are_reported(tmp_path: Path) -> None:
    write_network(tmp_path, _saved())
    tensors = load_file(str(tmp_path / TENSORS_FILE))
    broken = dict(tensors)
    broken.pop("classifier.5.bias")
    save_file(broken, str(tmp_path / TENSORS_FILE))
    with pytest.raises(DataError, match=r"missing \['classifier.5.bias'\]"):
        read_network(tmp_path)
    broken = dict(tensors)
    broken["classifier.5.bias"] = np.zeros(3, np.float32)
    save_file(broken, str(tmp_path / TENSORS_FILE))
    with pytest.raises(DataError, match=r"classifier.5.bias .* shape \(3,\)"):
        read_network(tmp_path)


def test_unknown_format_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no saved sparknet network"):
        read_network(tmp_path)
    write_network(tmp_path, _saved())
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["format"] = "something-else/9"
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="something-else/9"):
        read_network(tmp_path)


def test_an_objective_this_version_does_not_know_is_refused(tmp_path: Path) -> None:
    write_network(tmp_path, _saved())
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["objective"] = "poisson"
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"objective='poisson' is invalid.*another version"):
        read_network(tmp_path)


def test_only_local_paths_are_accepted() -> None:
    assert local_path("file:///tmp/m") == Path("/tmp/m")
    assert local_path("relative/m") == Path("relative/m")
    with pytest.raises(ConfigError, match="hdfs://nn/m"):
        local_path("hdfs://nn/m")


def test_onnx_matches_torch(tmp_path: Path) -> None:
    saved = _saved()
    path = export_onnx(saved, tmp_path / "net.onnx")
    x = np.random.default_rng(0).integers(0, 256, (37, 1, 28, 28)).astype(np.float32)
    probability, logits = ort.InferenceSession(str(path)).run(None, {"features": x})
    with torch.no_grad():
        expected, expected_logits = serving_network(saved)(torch.from_numpy(x))
    assert probability.shape == (37, 10)
    np.testing.assert_allclose(probability, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("objective", "outputs"), [
    ("binary", 1), ("multilabel", 3), ("mse", 1), ("huber", 2), ("multiclass", 3)])
def test_onnx_of_every_objective_matches_torch_and_driver_scoring(
        tmp_path: Path, objective: str, outputs: int) -> None:
    from sparknet.ml import SparkNetModel
    from sparknet.models.objectives import objective_named

    torch.manual_seed(0)
    args = json.dumps({"inputs": 4, "outputs": outputs})
    module = resolve_model("sparknet_testing.nets:mlp", args=args).build()
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    saved = SavedNetwork(network="sparknet_testing.nets:mlp", input_shape=(4,),
                         num_classes=outputs, input_scale=0.5, layout=layout, floats=floats,
                         ints=ints, objective=objective, network_args=args)
    path = export_onnx(saved, tmp_path / "net.onnx")
    x = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    probability, logits = ort.InferenceSession(str(path)).run(None, {"features": x})
    with torch.no_grad():
        expected, expected_logits = serving_network(saved)(torch.from_numpy(x))
    assert probability.shape == logits.shape == (9, outputs)
    np.testing.assert_allclose(probability, expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-6)

    # The graph's outputs are what transform writes (predict* score rows the same way).
    model = SparkNetModel._from_saved(saved)
    widths = objective_named(objective).score_widths(outputs)
    for row, p, z in zip(x, probability, logits, strict=True):
        if widths.probability == 0:
            np.testing.assert_allclose(np.atleast_1d(model.predict(row)), z, rtol=1e-5)
            continue
        raw, prob = model.predictRaw(row).toArray(), model.predictProbability(row).toArray()
        if objective == "binary":  # Spark's binary layout: [-z, z] and [1 - p, p]
            raw, prob = raw[1:], prob[1:]
        np.testing.assert_allclose(raw, z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(prob, p, rtol=1e-5, atol=1e-6)


def test_network_outputs_from_a_dry_run() -> None:
    lenet = resolve_model("lenet")
    assert network_outputs(lenet, (1, 28, 28)) == 10
    with pytest.raises(ConfigError, match=r"example of shape \[1, 20, 20\]"):
        network_outputs(lenet, (1, 20, 20))
    with pytest.raises(ConfigError, match="unknown model"):
        resolve_model("nonet")


def test_params_map_onto_train_config() -> None:
    est = SparkNetEstimator(inputShape=[1, 28, 28], numWorkers=3, tau=7, batchSize=16,
                            rounds=4, optimizer="adam", learningRate=0.002, weightDecay=1e-4,
                            outerOptimizer="nesterov", outerLearningRate=0.5, compression="bf16",
                            seed=11, network="cnn")
    config = est.train_config()
    assert (config.model, config.seed) == ("cnn", 11)
    assert (config.engine.num_workers, config.engine.tau, config.engine.batch_size,
            config.engine.rounds) == (3, 7, 16, 4)
    assert (config.optimizer.name, config.optimizer.lr, config.optimizer.weight_decay) == (
        "adam", 0.002, 1e-4)
    assert (config.outer.name, config.outer.lr, config.outer.compression) == (
        "nesterov", 0.5, "bf16")
    assert SparkNetEstimator(tau="auto").train_config().engine.tau == "auto"


@pytest.mark.parametrize(("params", "match"), [
    ({"learningRate": -1.0}, "optimizer.lr=-1.0"),
    ({"numWorkers": 0}, "num_workers=0"),
    ({"optimizer": "lbfgs"}, "optimizer.name='lbfgs'"),
    ({"compression": "zip"}, "outer.compression='zip'"),
])
def test_invalid_params_are_config_errors(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SparkNetEstimator(inputShape=[1, 28, 28], **params).train_config()


def test_input_shape_is_required() -> None:
    with pytest.raises(ConfigError, match="inputShape is not set"):
        SparkNetEstimator().getInputShape()
