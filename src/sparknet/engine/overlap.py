"""Overlapped rounds (``engine.overlap = "decoupled"`` or ``"eager"``): the next round runs
while the driver forms the last one's average, which is applied one round late.

In synchronous rounds every worker waits, each round, for Spark's per-job floor (schedule a
job, broadcast the state, collect the results). Here the driver keeps the next round's job
queued behind the running one, so a worker goes from one round to the next without waiting.
The job for round ``r`` is submitted before round ``r - 1`` has finished, so it starts from
``W[r-2]``, the weights with every round up to ``r - 2`` applied. Applying the missing round
naively (delayed averaging) oscillates in directions where workers converge within a round;
so each worker adds its own fresh change from round ``r - 1`` at once, in full (*decoupled*:
CoCoD-SGD, Shen et al., IJCAI 2019) or as its 1/K share of the average it cannot see yet
(*eager* updates for DiLoCo, Kale, Douillard, Donchev, 2025)::

    start_k(r) = W[r-2] + s * d_k(r-1)          W[r] = W[r-1] + mean_k d_k(r)

with ``s = 1`` (decoupled) or ``1/K`` (eager). Decoupled is CoCoD-SGD's rule exactly:
``W[r-1]`` is the mean of the round's starting points, and each worker resumes from it plus
its own progress; with ``W[r-1]`` the others' changes arrive one round later and the worker's
own full change is replaced by its share of the average. ``d_k`` is the change as the driver
receives it (after any compression), so worker and driver agree on it bit for bit.

Where the carry ``d_k(r-1)`` comes from: the task that made it left it in a file on its
executor (``CarryStore``); the next round's task for the same partition reads it there. A task
that cannot find it (its partition ran on another executor, or the file is gone) does not
guess: it reports the carry missing, and the driver reruns that partition with the carry it
has by then collected. Either way the task computes the same numbers, so a retried or rerun
task, or a resumed run, ends with the same weights bit for bit; the in-process runner always
takes the driver's copy, which is how the simulator models the mode.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparknet.averaging import EncodedDelta, decode_delta
from sparknet.engine.local_steps import RoundState, WorkerResult

# How long a task waits for the carry of a task still running on its executor.
CARRY_WAIT_SECONDS = 600.0
_POLL_SECONDS = 0.002


@dataclass(frozen=True)
class CarryPlan:
    """How the tasks of one overlapped round find their own change of the round before.

    ``token`` names this run's files; ``share`` is how much of it a worker adds
    (``own_share``); ``partitions``, when given, are the only ones that run (a rerun of
    partitions whose carry was missing).
    """

    token: str
    share: float
    partitions: tuple[int, ...] | None = None


def own_share(overlap: str, num_workers: int) -> float:
    """How much of its own last change a worker adds to the lagging weights."""
    return 1.0 if overlap == "decoupled" else 1.0 / num_workers


def sent_change(result: WorkerResult) -> np.ndarray:
    """The change a worker's result stands for, as the driver decodes it."""
    delta = result.delta
    return decode_delta(delta) if isinstance(delta, EncodedDelta) else delta


def start_state(base: RoundState, carry: np.ndarray | None, share: float) -> RoundState:
    """Where a worker starts an overlapped round: the lagging weights plus its own share.

    A carry that is not finite (a round whose update ``on_non_finite='skip'`` drops) is not
    added, so one bad round does not poison the rounds after it.
    """
    if carry is None or not np.isfinite(carry).all():
        return base
    floats = base.floats + carry * np.float32(share)
    return RoundState(floats.astype(np.float32, copy=False), base.ints, base.momentum)


def overlapped_task(train: Callable[[RoundState], WorkerResult], *, index: int,
                    round_index: int, base: RoundState, carry: CarryPlan,
                    explicit: tuple[np.ndarray, ...] | None,
                    store: CarryStore | None) -> WorkerResult | None:
    """One worker's overlapped round; None when its carry is neither given nor found.

    ``explicit`` holds the driver's copy of every worker's carry (a rerun, a resumed run, the
    in-process runner); without it the carry is read from ``store``.
    """
    own: np.ndarray | None = None
    if round_index > 0:
        if explicit is not None:
            own = explicit[index]
        elif store is not None:
            own = store.read(round_index - 1, index)
        if own is None:
            return None
    if store is not None:
        store.started(round_index, index)
    try:
        result = train(start_state(base, own, carry.share))
    except BaseException:
        if store is not None:
            store.abandon(round_index, index)
        raise
    if store is not None:
        store.write(round_index, index, sent_change(result))
        store.forget(round_index - 2, index)
    return result


class CarryStore:
    """Carries left on an executor's local disk, one file per (round, partition) of a run.

    A file holds the change's float32 bytes and ends with their SHA-256 digest, so a damaged
    or half-written file reads as missing. A ``.running`` marker names the process computing a
    carry, so the next round's task waits for it only while that process lives.
    """

    def __init__(self, folder: Path, token: str) -> None:
        self.folder = folder
        self.token = token

    def _path(self, round_index: int, index: int, suffix: str = ".f32") -> Path:
        return self.folder / f"{self.token}-r{round_index:07d}-p{index:06d}{suffix}"

    def started(self, round_index: int, index: int) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._path(round_index, index, ".running").write_text(str(os.getpid()))
        except OSError:
            pass  # without the marker the next task just does not wait

    def write(self, round_index: int, index: int, change: np.ndarray) -> None:
        """Best effort: a carry that cannot be written is later reported missing."""
        raw = np.ascontiguousarray(change, dtype=np.float32).tobytes()
        path = self._path(round_index, index)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            temporary.write_bytes(raw + hashlib.sha256(raw).digest())
            temporary.replace(path)
        except OSError:
            _remove(temporary)
        finally:
            _remove(self._path(round_index, index, ".running"))

    def abandon(self, round_index: int, index: int) -> None:
        """A failed task's marker goes, so that nobody waits for its carry."""
        _remove(self._path(round_index, index, ".running"))

    def read(self, round_index: int, index: int) -> np.ndarray | None:
        """The carry, waiting while the task making it runs on this executor."""
        path = self._path(round_index, index)
        deadline = time.monotonic() + CARRY_WAIT_SECONDS
        while not path.exists() and self._running(round_index, index) and \
                time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        body, digest = raw[:-32], raw[-32:]
        if len(raw) < 32 or len(body) % 4 or hashlib.sha256(body).digest() != digest:
            return None
        return np.frombuffer(body, dtype=np.float32)

    def _running(self, round_index: int, index: int) -> bool:
        try:
            pid = int(self._path(round_index, index, ".running").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def forget(self, round_index: int, index: int) -> None:
        if round_index >= 0:
            _remove(self._path(round_index, index))

    def clear(self) -> int:
        """Removes every file of this run here; returns how many there were."""
        removed = 0
        if self.folder.is_dir():
            for path in self.folder.glob(f"{self.token}-*"):
                removed += _remove(path)
        return removed


def _remove(path: Path) -> int:
    """Best effort: 1 if the file was there and is gone."""
    try:
        path.unlink()
    except OSError:
        return 0
    return 1
