"""Built networks kept per Python worker: one bounded, locked LRU for training and scoring.

Building a network (a Caffe definition especially) costs far more than loading weights into
it, and Spark reuses Python workers across tasks and jobs. Entries are keyed by the model
kind's stable key; the least recently used one is dropped beyond ``CAPACITY``, so a notebook
that trains many different networks keeps each worker's memory bounded.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from sparknet.flat import FlatLayout
from sparknet.models.kinds import ModelKind

CAPACITY = 4


@dataclass
class CachedNetwork:
    """A built network, its layout, and which weights it holds (None: changed by training)."""

    module: nn.Module
    layout: FlatLayout
    weights_token: str | None = None


class NetworkCache:
    """An LRU of built networks; safe to call from several threads of one worker."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, CachedNetwork] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: ModelKind) -> CachedNetwork:
        with self._lock:
            entry = self._entries.get(model.key)
            if entry is None:
                module = model.build()
                entry = CachedNetwork(module, FlatLayout.of(module))
                self._entries[model.key] = entry
                freeze_long_lived()
            self._entries.move_to_end(model.key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)


def freeze_long_lived() -> None:
    """Moves every object alive now (PyTorch's modules, the built network) out of the garbage
    collector's sight.

    PySpark's daemon runs a full ``gc.collect()`` in a reused Python worker after every task,
    before the worker takes the next one; with PyTorch and a network loaded that scan covers
    hundreds of thousands of objects, a per-task cost no overlap can hide
    (``benchmarks/round_overhead.py`` measures the floor with and without). Frozen objects are
    still freed by reference counting; only each task's own objects are left to scan.
    """
    gc.collect()
    gc.freeze()


NETWORKS = NetworkCache(CAPACITY)


def cached_network(model: ModelKind) -> CachedNetwork:
    """This worker's built network for ``model``.

    Tasks call this module-level function (pickled by reference), never ``NETWORKS`` itself:
    a closure would otherwise carry a copy of the cache and its lock to the executors.
    """
    return NETWORKS.get(model)
