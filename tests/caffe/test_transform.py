"""Caffe's DataTransformer and ImageData layer against real Caffe batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparknet.caffe import TransformConfig, image_data_batch, read_net, transform_batch
from sparknet.caffe.transform import read_image_list, resize_linear
from sparknet.errors import ConfigError, DataError

from .conftest import CAFFE_DIR, caffe_path

_MANIFEST = CAFFE_DIR / "reference" / "data" / "manifest_data.json"
CASES = sorted(json.loads(_MANIFEST.read_text())) if _MANIFEST.is_file() else ["<absent>"]


@pytest.mark.parametrize("case", CASES)
def test_image_data_case_matches_caffe_exactly(case: str) -> None:
    folder = caffe_path("reference", "data")
    layer = read_net(folder / f"{case}.prototxt").layer[0]
    reference = np.load(folder / f"{case}.npz")
    data, labels = image_data_batch(layer, folder=folder, train=False)
    assert data.dtype == np.float32 and data.shape == reference["data"].shape
    np.testing.assert_array_equal(data, reference["data"])
    np.testing.assert_array_equal(labels, reference["label"])


def test_centre_crop_mean_value_and_scale() -> None:
    images = np.arange(2 * 3 * 5 * 5, dtype=np.uint8).reshape(2, 3, 5, 5)
    config = TransformConfig(scale=0.5, crop_size=3, mean_value=(1.0, 2.0, 3.0))
    out = transform_batch(images, config, train=False)
    expected = (images[:, :, 1:4, 1:4].astype(np.float32)
                - np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)) * 0.5
    np.testing.assert_array_equal(out, expected)


def test_train_crop_and_mirror_are_seeded_and_match_some_window() -> None:
    images = np.random.default_rng(0).integers(0, 255, (4, 1, 6, 6)).astype(np.uint8)
    config = TransformConfig(crop_size=4, mirror=True)
    a = transform_batch(images, config, train=True, rng=np.random.default_rng(3))
    b = transform_batch(images, config, train=True, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    for i in range(4):
        windows = [images[i, :, r:r + 4, c:c + 4].astype(np.float32)
                   for r in range(3) for c in range(3)]
        windows += [w[:, :, ::-1] for w in windows]
        assert any(np.array_equal(a[i], w) for w in windows)


def test_random_transform_needs_a_generator() -> None:
    with pytest.raises(ConfigError, match="rng"):
        transform_batch(np.zeros((1, 1, 4, 4)), TransformConfig(crop_size=2), train=True)


def test_mean_file_shape_must_match(tmp_path: Path) -> None:
    config = TransformConfig(mean_file=caffe_path("models", "cifar10_mean", "mean.binaryproto"))
    with pytest.raises(DataError, match="mean image shape"):
        transform_batch(np.zeros((1, 3, 8, 8)), config, train=False)


def test_mean_file_and_mean_value_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="mean_file and mean_value"):
        TransformConfig(mean_file=Path("m"), mean_value=(1.0,))


def test_resize_identity_and_constant() -> None:
    img = np.random.default_rng(1).integers(0, 255, (7, 9)).astype(np.uint8)
    np.testing.assert_array_equal(resize_linear(img, 7, 9), img)
    flat = np.full((5, 5, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_linear(flat, 9, 3), np.full((9, 3, 3), 77, np.uint8))


def test_image_list_errors(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("a.png 1\nb.png notalabel\n")
    with pytest.raises(DataError, match="l.txt:2"):
        read_image_list(tmp_path / "l.txt")


def test_enlarging_rows_past_the_edges_is_opencvs() -> None:
    # Real Caffe's WindowData warp of a 4x4 window to 6x6 (one channel of it; found by the
    # oracle): OpenCV keeps the row weights past the top and bottom edges and reads the
    # edge row twice, which rounds differently from clamping the weights to (1, 0).
    image = np.array([[128, 238, 83, 39], [56, 167, 177, 238], [236, 82, 48, 2],
                      [203, 234, 188, 51]], dtype=np.uint8)
    caffe = [[128, 183, 212, 109, 61, 39], [92, 147, 190, 142, 134, 139],
             [86, 119, 153, 155, 177, 199], [206, 151, 92, 74, 55, 41],
             [220, 189, 151, 125, 72, 27], [203, 218, 226, 196, 119, 51]]
    np.testing.assert_array_equal(resize_linear(image, 6, 6), caffe)
