"""Early stopping: watch one validation metric, remember the best weights, say when to stop.

Pure bookkeeping over the loop's round records; the loop asks ``observe`` after each round and
restores ``best_floats``/``best_ints`` when training ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sparknet.config import Monitor


@dataclass
class EarlyStopping:
    """Stops after ``patience`` evaluations in a row without a better ``monitor`` value."""

    patience: int
    monitor: Monitor
    best_value: float | None = None
    best_round: int | None = None
    best_floats: np.ndarray | None = None
    best_ints: np.ndarray | None = None
    evaluations_since_best: int = 0

    @property
    def key(self) -> str:
        return "test_loss" if self.monitor == "loss" else "test_accuracy"

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value < self.best_value if self.monitor == "loss" else value > self.best_value

    def observe(self, record: dict[str, Any], floats: np.ndarray, ints: np.ndarray) -> bool:
        """Takes a round's record and weights; True when training should stop now."""
        value = record.get(self.key)
        if value is None:  # no evaluation this round
            return False
        if self._better(float(value)):
            self.best_value, self.best_round = float(value), int(record["round"])
            self.best_floats, self.best_ints = floats.copy(), ints.copy()
            self.evaluations_since_best = 0
            return False
        self.evaluations_since_best += 1
        return self.evaluations_since_best >= self.patience
