"""PySpark's Python daemon, quiet about workers whose JVM side went away.

When Spark cancels a task (a job aborted after a failure, a ``take`` that has its rows, a
stopping session), it closes that task's socket; the Python worker writing its results then
hits ``BrokenPipeError``, and PySpark's daemon prints its traceback on the driver's terminal.
Nothing is wrong and the task's outcome is already decided, so this daemon ends such a worker
without the traceback. Sessions sparknet starts use it (``spark.python.daemon.module``).
"""

from __future__ import annotations

from typing import Any

from pyspark import daemon

_run_worker = daemon.worker


def _worker(sock: Any, authenticated: bool) -> int:
    try:
        code: int = _run_worker(sock, authenticated)
    except (BrokenPipeError, ConnectionResetError):
        return 1  # not reused: the daemon closes the socket and ends this worker
    return code


daemon.worker = _worker  # manager() looks the name up in its module when it forks a worker

if __name__ == "__main__":
    daemon.manager()
