"""Whole trained networks against blobs saved by real Caffe (TEST-phase forward)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparknet.caffe import load_net

from .conftest import assert_matches_caffe, caffe_path

CASES = {
    "lenet_ethereon": ("lenet_ethereon/lenet.prototxt",
                       "lenet_ethereon/lenet_iter_10000.caffemodel", "mnist_samples_input.npz"),
    "lenet_v1_everpeace": ("v1_everpeace_2014/lenet.prototxt",
                           "v1_everpeace_2014/lenet_iter_10000.caffemodel",
                           "mnist_samples_input.npz"),
    "cifar10_quick_v1_everpeace_iter5000": ("v1_everpeace_2014/cifar10_quick.prototxt",
                                            "v1_everpeace_2014/cifar10_quick_iter_5000.caffemodel",
                                            "cifar_input.npz"),
    "resnet50_stem": ("resnet50_stem/test.prototxt", "resnet50_stem/test.caffemodel",
                      "resnet_stem_input.npz"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_blob_matches_caffe(case: str) -> None:
    proto, weights, inputs = CASES[case]
    net = load_net(caffe_path("models", proto), caffe_path("models", weights))
    reference = np.load(caffe_path("reference", f"{case}.npz"))
    data = np.load(caffe_path("reference", inputs))["data"]
    with torch.no_grad():
        blobs = net(torch.from_numpy(data))
    names = [k.removeprefix("blob:") for k in reference.files]
    assert names, "reference has no blobs"
    for name in names:
        assert_matches_caffe(blobs[name].numpy(), reference[f"blob:{name}"], f"{case} {name}")


@pytest.mark.parametrize("case", ["lenet_ethereon", "lenet_v1_everpeace"])
def test_mnist_digits_classified_as_caffe_does(case: str) -> None:
    proto, weights, inputs = CASES[case]
    net = load_net(caffe_path("models", proto), caffe_path("models", weights))
    samples = np.load(caffe_path("reference", inputs))
    reference = np.load(caffe_path("reference", f"{case}.npz"))
    with torch.no_grad():
        prob = net(torch.from_numpy(samples["data"]))["prob"].numpy()
    np.testing.assert_array_equal(prob.argmax(1), reference["blob:prob"].argmax(1))
    np.testing.assert_array_equal(prob.argmax(1), samples["labels"])


def test_cifar_mean_binaryproto_is_the_input_mean() -> None:
    from sparknet.caffe import read_binaryproto

    mean = read_binaryproto(caffe_path("models", "cifar10_mean", "mean.binaryproto"))
    np.testing.assert_array_equal(mean, np.load(caffe_path("reference", "cifar_input.npz"))["mean"])
