"""Reader for the Fashion-MNIST IDX gzip files (Debian package ``dataset-fashion-mnist``)."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparknet.errors import DataError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
SHAPE = (1, 28, 28)  # one example as stored: grey 28 x 28 pixels
NUM_CLASSES = 10
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
_HOW_TO_GET = ("install Debian's package (apt-get install dataset-fashion-mnist) or pass "
               "--data-dir to a folder holding the four *-ubyte.gz files")
_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049


@dataclass(frozen=True)
class Split:
    """One split: uint8 images [N, 1, 28, 28] and int64 labels [N]."""

    images: np.ndarray
    labels: np.ndarray


def load_split(split: str, data_dir: str | Path = DEFAULT_DIR) -> Split:
    """Reads ``train`` or ``test`` and checks magic numbers, sizes and label range."""
    if split not in FILES:
        raise DataError(f"unknown Fashion-MNIST split {split!r}: use 'train' or 'test'")
    folder = Path(data_dir)
    image_name, label_name = FILES[split]
    images = _read_idx(folder / image_name, _IMAGE_MAGIC, ndim=3)
    labels = _read_idx(folder / label_name, _LABEL_MAGIC, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder / image_name} holds {images.shape[0]} images but "
                        f"{folder / label_name} holds {labels.shape[0]} labels: the files are "
                        f"from different releases; {_HOW_TO_GET}")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"{folder / label_name} has label {labels.max()} outside 0..9: "
                        f"the file is corrupt; {_HOW_TO_GET}")
    return Split(images[:, None, :, :].copy(), labels.astype(np.int64))


def check_available(data_dir: str | Path = DEFAULT_DIR) -> dict[str, int]:
    """Raises a DataError naming the first missing, corrupt or truncated file; returns the
    number of examples of each split. Reads every file (a corrupt ``.gz`` is found here,
    before Spark starts, not in the first job)."""
    for names in FILES.values():
        for name in names:
            path = Path(data_dir) / name
            if not path.is_file():
                raise DataError(f"Fashion-MNIST file {path} is missing: {_HOW_TO_GET}")
    return {split: len(load_split(split, data_dir).labels) for split in FILES}


def _read_idx(path: Path, magic: int, *, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file {path} is missing: {_HOW_TO_GET}")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}): {_HOW_TO_GET}") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated ({len(raw)} bytes): {_HOW_TO_GET}")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise DataError(f"{path} has IDX magic {found_magic}, expected {magic}: it is not "
                        f"this kind of IDX file; {_HOW_TO_GET}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path} should hold {expected} bytes of data for shape {dims} but has "
                        f"{len(raw) - header}: the file is truncated or corrupt; {_HOW_TO_GET}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
