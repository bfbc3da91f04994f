"""The ImageNet-class built-ins train from a streamed image folder on CPU (tiny images)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

SIZES = {"alexnet": 64, "caffenet": 64, "googlenet": 32, "resnet50": 32}


def write_colour_folder(root: Path, *, per_class: int = 8) -> Path:
    """Two classes of small RGB PNGs, reddish and bluish, of mixed sizes."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 128, (12 + i % 3, 16, 3), dtype=np.uint8)
            pixels[..., 0 if label == 0 else 2] += 120
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_folder(tmp_path_factory.mktemp("rgb") / "train")


@pytest.mark.spark
@pytest.mark.parametrize("name", [pytest.param("alexnet", marks=pytest.mark.slow),
                                  pytest.param("caffenet", marks=pytest.mark.slow),
                                  "googlenet", "resnet50"])
def test_imagenet_builtins_train_on_a_streamed_image_folder(spark: Any, colour_folder: Path,
                                                            name: str) -> None:
    from sparknet.config import TrainConfig
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import image_folder_data
    from sparknet.engine.state import initial_state
    from sparknet.engine.trainer import train
    from sparknet.models.registry import resolve_model

    size = SIZES[name]
    spec = InputSpec(shape=(3, size, size), num_classes=2, scale=1 / 255)
    data, classes, summary = image_folder_data(spark, colour_folder, val=None, spec=spec,
                                               num_workers=2, batch_size=4)
    try:
        config = TrainConfig.from_dict({"model": f"{name}#2", "engine": {
            "num_workers": 2, "tau": 2, "batch_size": 4, "rounds": 1, "eval_every": 0},
            "optimizer": {"lr": 0.001}})
        result = train(data, config=config, progress=False)
    finally:
        data.release()
    assert classes == ["blue", "red"] and sum(summary.shard_sizes) == 16
    _, start, _ = initial_state(resolve_model(f"{name}#2"), seed=0)
    assert np.isfinite(result.floats).all() and not np.array_equal(result.floats, start)


@pytest.mark.spark
@pytest.mark.slow
def test_cli_trains_googlenet_on_an_image_folder(colour_folder: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sparknet.cli.main", "train", "--images", str(colour_folder),
         "--model", "googlenet#2", "--input-shape", "3,32,32", "--num-workers", "1",
         "--tau", "2", "--batch-size", "4", "--rounds", "1", "--eval-every", "0",
         "--lr", "0.001", "--output", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "images: 16 files in 1 streamed shards" in done.stdout
    assert (tmp_path / "run" / "classes.json").is_file()
