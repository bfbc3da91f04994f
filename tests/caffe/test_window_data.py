"""Caffe's WindowData (R-CNN window files): the file read as Caffe reads it, windows warped
as Caffe's load_batch warps them, batches of background then foreground windows. Real
Caffe's batches are compared in tests/caffe_oracle/test_data_layers_oracle.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparknet.caffe import parse_net_text
from sparknet.caffe.transform import resize_linear
from sparknet.caffe.window_data import Window, read_window_file, window_batch, window_crop
from sparknet.errors import DataError


def files(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3)).astype(np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "w.txt").write_text("# 0\na.png\n3 12 10\n3\n1 0.8 0 0 5 5\n0 0.1 2 2 9 11\n"
                                    "2 0.4 1 1 3 3\n")
    return tmp_path / "w.txt"


def test_the_window_file_splits_foreground_and_background(tmp_path: Path) -> None:
    windows = read_window_file(files(tmp_path), folder=tmp_path, bg_threshold=0.3)
    assert windows.images == ((tmp_path / "a.png", (3, 12, 10)),)
    assert windows.foreground == (Window(0, 1, float(np.float32(0.8)), 0, 0, 5, 5),)
    assert windows.background == (Window(0, 0, 0.0, 2, 2, 9, 11),)  # 0.4: dropped


def test_a_warp_is_the_bilinear_resize_and_context_leaves_zeros() -> None:
    image = np.arange(3 * 12 * 10, dtype=np.uint8).reshape(3, 12, 10)
    window = Window(0, 1, 1.0, 2, 3, 7, 9)
    plain = window_crop(image, window, crop_size=5, scale=0.5)
    region = np.ascontiguousarray(image[:, 3:10, 2:8].transpose(1, 2, 0))
    np.testing.assert_array_equal(plain, resize_linear(region, 5, 5).transpose(2, 0, 1) * 0.5)
    corner = window_crop(image, Window(0, 1, 1.0, 0, 0, 3, 3), crop_size=8, context_pad=2,
                         mean_values=(0.5,))
    assert np.all(corner[:, :2, :] == 0) and np.all(corner[:, :, :2] == 0)  # beyond the image
    assert np.all(corner[:, 2:, 2:] != 0)


def test_a_batch_draws_background_then_foreground(tmp_path: Path) -> None:
    files(tmp_path)
    layer = parse_net_text(
        'layer { name: "w" type: "WindowData" top: "data" top: "label" window_data_param { '
        'source: "w.txt" batch_size: 4 fg_fraction: 0.5 } transform_param { crop_size: 6 '
        "mirror: true } }").layer[0]
    data, labels = window_batch(layer, folder=tmp_path, rng=np.random.default_rng(0))
    assert data.shape == (4, 3, 6, 6) and labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"), ("# 0\na.png\n3 12", "ends inside"), ("x 0 a.png 3 1 1 0", "'#'"),
    ("# 0\na.png\n3 12 10\n1\n0 0.9 0 0 1 1\n", "label 0"),
])
def test_broken_window_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "w.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_window_file(tmp_path / "w.txt")
