"""Three datasets the project never tuned on, and the networks the defaults study trains.

- digits: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), a small CNN;
- letters: UCI Letter Recognition (20,000 rows, 16 features, 26 classes), an MLP;
- satellite: UCI Statlog Landsat Satellite (6,435 rows, 36 features, 6 classes), an MLP.

The two UCI sets come from Debian's ``r-cran-mlbench`` package: ``apt-get download`` fetches
the .deb (no R needed, no root needed), and the ``rdata`` package reads its plain .rda files.
Features are standardised with the training split's mean and deviation, as a user's
StandardScaler stage would, so every trainer sees the same inputs.
"""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

CACHE = Path.home() / ".cache" / "sparknet" / "mlbench"


@dataclass(frozen=True)
class Dataset:
    name: str
    train: tuple[np.ndarray, np.ndarray]   # float32 [n, *shape], int64 [n]
    test: tuple[np.ndarray, np.ndarray]
    shape: tuple[int, ...]
    num_classes: int
    network: str          # factory reference, 'unseen_data:...'
    network_args: dict[str, int]


def digits(*, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x = (data.images[order] / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target[order].astype(np.int64)
    cut = int(0.8 * len(y))
    return Dataset("digits", (x[:cut], y[:cut]), (x[cut:], y[cut:]), (1, 8, 8), 10,
                   "unseen_data:small_cnn", {"num_classes": 10})


def letters() -> Dataset:
    frame = _mlbench("LetterRecognition")
    y = frame["lettr"].cat.codes.to_numpy().astype(np.int64)
    x = frame.drop(columns=["lettr"]).to_numpy(np.float32)
    # The UCI split: the first 16,000 rows train, the last 4,000 test.
    return _tabular("letters", x, y, cut=16000, num_classes=26)


def satellite() -> Dataset:
    frame = _mlbench("Satellite")
    y = frame["classes"].cat.codes.to_numpy().astype(np.int64)
    x = frame.drop(columns=["classes"]).to_numpy(np.float32)
    # Statlog's split: 4,435 training rows, then 2,000 test rows (mlbench keeps the order).
    return _tabular("satellite", x, y, cut=4435, num_classes=6)


DATASETS = {"digits": digits, "letters": letters, "satellite": satellite}


def _tabular(name: str, x: np.ndarray, y: np.ndarray, *, cut: int, num_classes: int
             ) -> Dataset:
    mean, std = x[:cut].mean(axis=0), x[:cut].std(axis=0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    return Dataset(name, (x[:cut], y[:cut]), (x[cut:], y[cut:]), (x.shape[1],), num_classes,
                   "unseen_data:mlp", {"in_features": x.shape[1], "num_classes": num_classes})


def _mlbench(name: str):  # -> pandas.DataFrame
    import rdata
    path = _mlbench_dir() / f"{name}.rda"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown encoding. Assumed ASCII."
        return rdata.read_rda(str(path))[name]


def _mlbench_dir() -> Path:
    data = CACHE / "usr" / "lib" / "R" / "site-library" / "mlbench" / "data"
    if data.is_dir():
        return data
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "r-cran-mlbench"], cwd=CACHE, check=True,
                   capture_output=True)
    deb = next(CACHE.glob("r-cran-mlbench_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE)], check=True)
    return data


def small_cnn(num_classes: int = 10) -> nn.Module:
    """Two 3x3 convolutions for 8x8 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, num_classes))


def mlp(in_features: int, num_classes: int, hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes))


def accuracy(model: nn.Module, test: tuple[np.ndarray, np.ndarray]) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(test[0]))
    return float((logits.argmax(1).numpy() == test[1]).mean())
