"""Image folders: layout errors, corrupt files, mixed sizes, and training through the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sparknet.data.images import class_names, decode_image
from sparknet.data.shards import InputSpec
from sparknet.errors import DataError

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparknet.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture()
def copied(jpeg_folder: Path, tmp_path: Path) -> Path:
    """A writable copy of the training folder."""
    return Path(shutil.copytree(jpeg_folder / "train", tmp_path / "train"))


@pytest.mark.parametrize(("layout", "expected"), [
    ({}, "has no class sub-folders"),
    ({"cats": [], "dogs": ["a.jpg"]}, "holds no .jpg/.jpeg/.png image"),
    ({"cats": ["a.jpg"]}, "needs at least two"),
])
def test_folder_layout_errors_are_one_line(tmp_path: Path, layout: dict[str, list[str]],
                                           expected: str) -> None:
    for name, files in layout.items():
        (tmp_path / name).mkdir()
        for file in files:
            Image.new("L", (4, 4)).save(tmp_path / name / file)
    with pytest.raises(DataError, match=expected):
        class_names(tmp_path)
    result = _cli("train", "--images", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_mixed_sizes_are_resized_bilinear_to_the_input_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    image.save(tmp_path / "x.png")
    decoded = decode_image((tmp_path / "x.png").read_bytes(), (1, 28, 28))
    expected = np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR))
    assert decoded.shape == (1, 28, 28) and np.array_equal(decoded[0], expected)


@pytest.mark.spark
def test_a_corrupt_file_is_named_or_skipped_and_counted(spark: Any, copied: Path) -> None:
    from sparknet.data.sources import image_folder_data

    victim = sorted((copied / "3-Dress").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated JPEG
    with pytest.raises(DataError, match=f"not decodable PNG/JPEG images.*{victim.name}"):
        image_folder_data(spark, copied, val=None, spec=SPEC, num_workers=2, batch_size=16)
    data, _, summary = image_folder_data(spark, copied, val=None, spec=SPEC, num_workers=2,
                                         batch_size=16, invalid_images="skip")
    data.release()
    assert summary.skipped_images == 1 and victim.name in str(summary.skipped_example)
    assert sum(summary.shard_sizes) == 1199


@pytest.mark.spark
def test_mixed_sizes_train_under_the_resize_policy(spark: Any, copied: Path) -> None:
    from sparknet.config import TrainConfig
    from sparknet.data.sources import image_folder_data
    from sparknet.engine.trainer import train

    for path in sorted((copied / "8-Bag").glob("*.jpg"))[:5]:
        Image.open(path).resize((50, 37)).convert("RGB").save(path)
    data, _, summary = image_folder_data(spark, copied, val=None, spec=SPEC, num_workers=2,
                                         batch_size=16)
    try:
        config = TrainConfig.from_dict({"model": "lenet", "engine": {
            "num_workers": 2, "tau": 5, "batch_size": 16, "rounds": 1, "eval_every": 0}})
        result = train(data, config=config, progress=False)
    finally:
        data.release()
    assert sum(summary.shard_sizes) == 1200 and np.isfinite(result.floats).all()


@pytest.mark.spark
def test_val_folder_with_other_classes_is_an_error(spark: Any, jpeg_folder: Path,
                                                   tmp_path: Path) -> None:
    from sparknet.data.images import image_folder_frame

    val = Path(shutil.copytree(jpeg_folder / "val", tmp_path / "val"))
    (val / "0-T_shirt_top").rename(val / "zebra")
    with pytest.raises(DataError, match="class folders the training data lacks"):
        image_folder_frame(spark, val, classes=class_names(jpeg_folder / "train"),
                           flag="--val-images")


@pytest.mark.slow
def test_cli_trains_on_a_jpeg_folder(tmp_path: Path, fashion: Any) -> None:
    """``sparknet train --images`` on 6,000 JPEG files reaches 75% validation accuracy."""
    from sparknet_testing.data import write_image_folder

    write_image_folder(tmp_path / "train", split="train", count=6000)
    write_image_folder(tmp_path / "val", split="test", count=1000)
    result = _cli("train", "--images", str(tmp_path / "train"), "--val-images",
                  str(tmp_path / "val"), "--num-workers", "2", "--tau", "25", "--batch-size",
                  "32", "--rounds", "24", "--eval-every", "8", "--lr", "0.02", "--outer",
                  "nesterov", "--output", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "images: 6,000 files in 2 streamed shards" in result.stdout
    accuracy = float(result.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 75.0, result.stdout
    assert (tmp_path / "run" / "classes.json").read_text().count('"') == 20
