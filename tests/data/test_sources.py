"""Driver arrays are checked and normalised once, before any job, the same for every placement."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sparknet.data.shards import InputSpec
from sparknet.data.sources import _normalised, from_arrays
from sparknet.errors import ConfigError

SPEC = InputSpec(shape=(1, 2, 2), num_classes=3)
TARGETS = InputSpec(shape=(1, 2, 2), num_classes=2, label_width=2)


def test_arrays_become_what_every_placement_stores() -> None:
    features, labels = _normalised("train", np.ones((5, 4), np.float64),
                                   np.arange(5, dtype=np.int32) % 3, SPEC)
    assert features.dtype == np.float32 and labels.dtype == np.int64
    pixels = np.ones((5, 1, 2, 2), np.uint8)
    assert _normalised("train", pixels, np.zeros(5, np.int64), SPEC)[0] is pixels
    one = InputSpec(shape=(1, 2, 2), num_classes=1, label_width=1)
    _, targets = _normalised("train", pixels, np.linspace(0, 1, 5), one)
    assert targets.shape == (5, 1) and targets.dtype == np.float32  # one target: [n, 1]


@pytest.mark.parametrize(("features", "labels", "spec", "message"), [
    (np.ones((5, 1, 2, 2)), np.zeros((5, 2), np.float32), SPEC, r"needs integer class indices"),
    (np.ones((5, 1, 2, 2)), np.zeros(5, np.int64), TARGETS, r"needs float targets \[n, 2\]"),
    (np.ones((5, 3)), np.zeros(5, np.int64), SPEC, r"3 feature values per example"),
    (np.ones((5, 4)), np.zeros(4, np.int64), SPEC, r"and 4 labels"),
    (np.array([["a"] * 4] * 5), np.zeros(5, np.int64), SPEC, r"are not numbers"),
])
def test_arrays_that_do_not_fit_the_spec_are_one_line(spark: Any, features: np.ndarray,
                                                      labels: np.ndarray, spec: InputSpec,
                                                      message: str) -> None:
    for streamed in (False, True):
        with pytest.raises(ConfigError, match=message) as caught:
            from_arrays(spark, train=(features, labels), test=None, spec=spec, num_workers=2,
                        seed=0, streamed=streamed)
        assert "\n" not in str(caught.value)
