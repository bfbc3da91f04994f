"""PySpark's Python daemon, quiet about workers whose JVM side went away, and without a full
garbage collection between a reused worker's tasks.

When Spark cancels a task (a job aborted after a failure, a ``take`` that has its rows, a
stopping session), it closes that task's socket; the Python worker writing its results then
hits ``BrokenPipeError``, and PySpark's daemon prints its traceback on the driver's terminal.
Nothing is wrong and the task's outcome is already decided, so this daemon ends such a worker
without the traceback. Sessions sparknet starts use it (``spark.python.daemon.module``).

PySpark's daemon also runs a full ``gc.collect()`` in a reused worker after every task, before
the worker takes the next one. With PyTorch loaded that scan covers over a hundred thousand
objects even after ``model_cache.freeze_long_lived``: 60-150 ms per task on a 2-core VM, on
the critical path of every round (the next round's task is already waiting). Here that call
collects the young generations only; the interpreter's own thresholds still run full
collections as objects accumulate, as in any long-lived Python process.
"""

from __future__ import annotations

import gc
from typing import Any

from pyspark import daemon

_run_worker = daemon.worker


def _worker(sock: Any, authenticated: bool) -> int:
    try:
        code: int = _run_worker(sock, authenticated)
    except (BrokenPipeError, ConnectionResetError):
        return 1  # not reused: the daemon closes the socket and ends this worker
    return code


class _YoungGenerations:
    """Stands in for the ``gc`` module in PySpark's daemon: its per-task ``collect()``."""

    @staticmethod
    def collect() -> int:
        return gc.collect(1)


daemon.worker = _worker  # manager() looks the name up in its module when it forks a worker
daemon.gc = _YoungGenerations  # type: ignore[attr-defined,assignment]  # used only for collect()

if __name__ == "__main__":
    daemon.manager()
