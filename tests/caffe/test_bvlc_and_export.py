"""Canonical BVLC definitions build and run; ONNX export; inspect; logits_model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparknet.caffe import export_onnx, load_net, logits_model
from sparknet.caffe.inspect import format_inspection

from .conftest import caffe_path

BVLC = ("models", "bvlc_prototxt")


@pytest.mark.parametrize(("name", "phase", "shapes", "outputs", "logits"), [
    ("models__bvlc_alexnet__deploy.prototxt", "TEST", None, {"prob": (10, 1000)}, "fc8"),
    ("models__bvlc_reference_caffenet__deploy.prototxt", "TEST", None, {"prob": (10, 1000)},
     "fc8"),
    ("models__bvlc_googlenet__deploy.prototxt", "TEST", None, {"prob": (10, 1000)},
     "loss3/classifier"),
    ("examples__cifar10__cifar10_full.prototxt", "TEST", None, {"prob": (1, 10)}, "ip1"),
    ("examples__mnist__lenet_train_test.prototxt", "TRAIN", {"data": (64, 1, 28, 28)},
     {"loss": ()}, "ip2"),
    ("examples__mnist__lenet_train_test.prototxt", "TEST", {"data": (100, 1, 28, 28)},
     {"loss": (), "accuracy": ()}, "ip2"),
])
def test_bvlc_definitions_build_with_declared_shapes(
        name: str, phase: str, shapes: dict[str, tuple[int, ...]] | None,
        outputs: dict[str, tuple[int, ...]], logits: str) -> None:
    net = load_net(caffe_path(*BVLC, name), phase=phase, input_shapes=shapes)
    for blob, shape in outputs.items():
        assert net.blob_shapes[blob] == shape
    assert set(net.output_names) == set(outputs)
    assert net.logits_blob == logits


@pytest.mark.parametrize("name", ["examples__cifar10__cifar10_full.prototxt",
                                  "examples__mnist__lenet_train_test.prototxt",
                                  "examples__cifar10__cifar10_quick_train_test.prototxt"])
def test_small_bvlc_nets_run_a_forward(name: str) -> None:
    shapes = {"data": (4, 1, 28, 28)} if "mnist" in name else {"data": (4, 3, 32, 32)}
    net = load_net(caffe_path(*BVLC, name), phase="TEST", input_shapes=shapes)
    inputs = {"data": torch.rand(*net.input_shapes["data"])}  # type: ignore[misc]
    if "label" in net.input_names:
        inputs["label"] = torch.randint(0, 10, (net.input_shapes["data"][0],)).float()  # type: ignore[index]
    with torch.no_grad():
        blobs = net(**inputs)
    logits = blobs[net.logits_blob]
    assert logits.shape[1] == 10 and torch.isfinite(logits).all()
    if "loss" in blobs:
        assert torch.isfinite(blobs["loss"]) and 0 <= float(blobs["accuracy"]) <= 1


def test_logits_model_trains_with_cross_entropy() -> None:
    model = logits_model(caffe_path("reference", "solver", "lenet_memorydata_train.prototxt"),
                         caffe_path("reference", "solver", "lenet_init.caffemodel"))
    assert model.logits_blob == "ip2" and model.input_name == "data"
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert set(grads) == set(model.param_specs) and all(g is not None for g in grads.values())
    assert model.param_specs["net.layers.ip1.blobs.1"].lr_mult == 2.0


def test_onnx_export_matches_torch_on_lenet_reference_input(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    samples = np.load(caffe_path("reference", "mnist_samples_input.npz"))
    model = logits_model(caffe_path("models", "lenet_ethereon", "lenet.prototxt"),
                         caffe_path("models", "lenet_ethereon", "lenet_iter_10000.caffemodel"),
                         input_shapes={"data": samples["data"].shape})
    export_onnx(model, tmp_path / "lenet.onnx")
    assert model.training  # export leaves the mode as it was
    model.eval()
    onnx_logits = ort.InferenceSession(str(tmp_path / "lenet.onnx")).run(
        None, {"input": samples["data"]})[0]
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(samples["data"])).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=0, atol=1e-5 * max(
        1.0, float(np.abs(torch_logits).max())))
    np.testing.assert_array_equal(onnx_logits.argmax(1), samples["labels"])


def test_onnx_export_of_ceil_pooling_and_batchnorm(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = logits_model(caffe_path("models", "resnet50_stem", "test.prototxt"),
                         caffe_path("models", "resnet50_stem", "test.caffemodel"))
    model.eval()
    export_onnx(model, tmp_path / "stem.onnx")
    x = np.load(caffe_path("reference", "resnet_stem_input.npz"))["data"]
    got = ort.InferenceSession(str(tmp_path / "stem.onnx")).run(None, {"input": x})[0]
    reference = np.load(caffe_path("reference", "resnet50_stem.npz"))["blob:pool1"]
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5 * float(np.abs(reference).max()))


@pytest.mark.parametrize(("parts", "expected"), [
    (("models", "lenet_ethereon", "lenet.prototxt"),
     ["conv1", "Convolution", "conv1 64x20x24x24", "20x1x5x5, 20", "431,080"]),
    (("models", "v1_everpeace_2014", "lenet_iter_10000.caffemodel"),
     ["1x1x500x800", "431,080"]),
    (("models", "cifar10_mean", "mean.binaryproto"), ["1x3x32x32", "3,072"]),
    (("models", "bvlc_prototxt", "examples__mnist__lenet_train_test.prototxt"),
     ["data ?", "input_shapes"]),
])
def test_format_inspection(parts: tuple[str, ...], expected: list[str]) -> None:
    text = format_inspection(caffe_path(*parts))
    for piece in expected:
        assert piece in text
