"""A small ImageNet-like JPEG folder of Fashion-MNIST, written once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory, fashion: Any) -> Path:
    """1,200 training and 300 validation Fashion-MNIST images as 28x28 grey JPEG files:
    ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``."""
    from sparknet_testing.data import write_image_folder

    root = tmp_path_factory.mktemp("jpegs")
    write_image_folder(root / "train", split="train", count=1200)
    write_image_folder(root / "val", split="test", count=300)
    return root
