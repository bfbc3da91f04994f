"""Shared fixtures: the real Caffe files in ../shared/caffe beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CAFFE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "caffe"


def caffe_path(*parts: str) -> Path:
    """A file under the shared Caffe folder; skips the test when the folder is absent."""
    if not CAFFE_DIR.is_dir():
        pytest.skip(f"real Caffe reference files not found at {CAFFE_DIR}")
    return CAFFE_DIR.joinpath(*parts)


def assert_matches_caffe(ours: np.ndarray, caffe: np.ndarray, what: str) -> None:
    """The README's rule: max |ours - caffe| <= 1e-5 * max(1, max |caffe|)."""
    assert ours.shape == caffe.shape, f"{what}: shape {ours.shape} != Caffe's {caffe.shape}"
    bound = 1e-5 * max(1.0, float(np.abs(caffe).max(initial=0.0)))
    err = float(np.abs(ours.astype(np.float64) - caffe).max(initial=0.0))
    assert err <= bound, f"{what}: max error {err} > {bound}"
