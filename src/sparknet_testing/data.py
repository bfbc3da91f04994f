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


def class_folder_names() -> list[str]:
    """Fashion-MNIST's classes as folder names whose sorted order is the label order."""
    return [f"{i}-{''.join(c if c.isalnum() else '_' for c in name)}"
            for i, name in enumerate(fashion_mnist.CLASSES)]


def write_image_folder(folder: str | Path, *, split: str = "train", count: int | None = None,
                       size: int = 28, rgb: bool = False, start: int = 0, quality: int = 90,
                       source: str | Path = fashion_mnist.DEFAULT_DIR) -> Path:
    """Writes Fashion-MNIST images ``start..start+count`` of ``split`` as JPEG files laid out
    like ImageNet: ``folder/<class>/<split>-<index>.jpg``.

    ``size``/``rgb`` upscale (bilinear) and replicate channels, so decoding costs what it
    would on photos (the benchmarks use 64x64 RGB).
    """
    from PIL import Image

    folder = Path(folder)
    data = fashion_mnist.load_split(split, source)
    stop = len(data.labels) if count is None else start + count
    names = class_folder_names()
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for index in range(start, stop):
        image = Image.fromarray(data.images[index, 0])
        if size != 28:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        if rgb:
            image = image.convert("RGB")
        image.save(folder / names[int(data.labels[index])] / f"{split}-{index:05d}.jpg",
                   quality=quality)
    return folder
