"""Shared fixtures: one real local[2] SparkSession per test run, real Fashion-MNIST data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SHARED_CAFFE = Path(__file__).resolve().parents[1].parent / "shared" / "caffe"


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from sparknet.engine.spark_session import get_or_create_session

    session = get_or_create_session("local[2,4]", app_name="sparknet-tests")  # 4 tries per task
    yield session
    session.stop()


@pytest.fixture(scope="session")
def fashion() -> object:
    """Both Fashion-MNIST splits (uint8 images, int64 labels)."""
    from sparknet.data import fashion_mnist

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR}: run scripts/bootstrap.sh")
    return {split: fashion_mnist.load_split(split, FASHION_DIR) for split in ("train", "test")}
