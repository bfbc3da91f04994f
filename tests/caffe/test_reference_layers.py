"""Every single-layer case of reference/layers against real Caffe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparknet.caffe import load_net, read_caffemodel

from .conftest import CAFFE_DIR, assert_matches_caffe, caffe_path

_MANIFEST = CAFFE_DIR / "reference" / "layers" / "manifest_layers.json"
CASES = sorted(json.loads(_MANIFEST.read_text())) if _MANIFEST.is_file() else ["<absent>"]


def _run(case: str) -> tuple[dict[str, torch.Tensor], np.lib.npyio.NpzFile, object]:
    folder = caffe_path("reference", "layers")
    manifest = json.loads((folder / "manifest_layers.json").read_text())[case]
    net = load_net(folder / f"{case}.prototxt", folder / f"{case}.caffemodel",
                   phase=manifest["phase"])
    reference = np.load(folder / f"{case}.npz")
    inputs = {k.removeprefix("input:"): torch.from_numpy(reference[k])
              for k in reference.files if k.startswith("input:")}
    if case == "batchnorm_train":
        _rewind_batchnorm(net, reference)
    with torch.no_grad():
        blobs = net(**inputs)
    return blobs, reference, net


def _rewind_batchnorm(net: object, reference: np.lib.npyio.NpzFile) -> None:
    # Caffe saved this case's caffemodel after the TRAIN forward, so it already holds the
    # updated statistics. Invert Caffe's update (s' = f*s + 1, mean' = f*mean + mu,
    # var' = f*var + m/(m-1)*sigma^2) to recover the blobs the forward started from.
    x = reference["input:input"].astype(np.float64)
    m = x.size // x.shape[1]
    mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) * m / (m - 1)
    f = 0.999
    bn = net.layers["bn"]  # type: ignore[attr-defined]
    after = [b.detach().numpy().astype(np.float64) for b in bn.blobs]
    before = [(after[0] - mu) / f, (after[1] - var) / f, (after[2] - 1.0) / f]
    np.testing.assert_allclose(before[2], 0.5, rtol=1e-6)  # the start value Caffe was given
    with torch.no_grad():
        for blob, value in zip(bn.blobs, before, strict=True):
            blob.copy_(torch.from_numpy(value.astype(np.float32)))


@pytest.mark.parametrize("case", CASES)
def test_layer_case_matches_caffe(case: str) -> None:
    blobs, reference, net = _run(case)
    names = [k for k in reference.files if k.startswith("blob:")]
    assert names
    for key in names:
        name = key.removeprefix("blob:")
        assert_matches_caffe(blobs[name].numpy(), reference[key], f"{case} blob {name}")
    params = net.caffe_blobs()  # type: ignore[attr-defined]
    for key in (k for k in reference.files if k.startswith("param:")):
        _, layer, index = key.split(":")
        assert_matches_caffe(params[layer][int(index)], reference[key], f"{case} {key}")


@pytest.mark.parametrize("case", CASES)
def test_layer_case_blob_shapes_match_manifest(case: str) -> None:
    folder = caffe_path("reference", "layers")
    manifest = json.loads((folder / "manifest_layers.json").read_text())[case]
    net = load_net(folder / f"{case}.prototxt", phase=manifest["phase"])
    layer_names = [(m.caffe_name, m.caffe_type) for m in net.layers.values()]
    expected_layers = [tuple(x) for x in manifest["layers"] if x[1] != "Input"]
    assert layer_names == expected_layers
    weights = read_caffemodel(folder / f"{case}.caffemodel")
    for name, shape in manifest["shapes"].items():
        if ":" in name:
            layer, index = name.split(":")
            assert list(weights[layer][int(index)].shape) == shape
        else:
            assert list(net.blob_shapes[name]) == shape, name
