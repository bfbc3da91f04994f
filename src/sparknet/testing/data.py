"""A small Fashion-MNIST folder for cluster runs, so each driver reads little."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from sparknet.data import fashion_mnist


def write_fashion_subset(folder: str | Path, *, train: int = 4000, test: int = 1000,
                         source: str | Path = fashion_mnist.DEFAULT_DIR) -> Path:
    """Writes the first ``train``/``test`` images of Fashion-MNIST as IDX gzip files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        data = fashion_mnist.load_split(split, source)
        image_name, label_name = fashion_mnist.FILES[split]
        _write_idx(folder / image_name, 2051, data.images[:count, 0])
        _write_idx(folder / label_name, 2049, data.labels[:count].astype(np.uint8))
    return folder


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *array.shape))
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array).tobytes(), 1))
