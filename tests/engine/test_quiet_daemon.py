"""The daemon sessions sparknet starts use (``spark.python.daemon.module``): a worker whose
JVM side closed its socket ends without a traceback on the driver's terminal, and a reused
worker collects only the young generations between tasks."""

from __future__ import annotations

import gc
import socket

import pytest
from pyspark import daemon

from sparknet.engine import quiet_daemon


def _closed_by_the_jvm() -> socket.socket:
    ours, theirs = socket.socketpair()
    theirs.close()  # what Spark does to a cancelled task's worker
    return ours


def test_a_worker_whose_socket_was_closed_ends_quietly(monkeypatch: pytest.MonkeyPatch,
                                                       capfd: pytest.CaptureFixture[str]
                                                       ) -> None:
    # Spark's default (spark.python.daemon.killWorkerOnFlushFailure): PySpark's own worker
    # function raises, and its daemon would print the traceback.
    monkeypatch.setenv("PYTHON_DAEMON_KILL_WORKER_ON_FLUSH_FAILURE", "true")
    with pytest.raises(BrokenPipeError):
        quiet_daemon._run_worker(_closed_by_the_jvm(), True)
    capfd.readouterr()

    assert quiet_daemon._worker(_closed_by_the_jvm(), True) == 1
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "BrokenPipeError" not in captured.err


def test_sparknet_sessions_use_it(spark: object) -> None:
    conf = spark.sparkContext.getConf()  # type: ignore[attr-defined]
    assert conf.get("spark.python.daemon.module") == "sparknet.engine.quiet_daemon"


def test_between_tasks_the_daemon_collects_only_the_young_generations() -> None:
    assert daemon.gc is quiet_daemon._YoungGenerations  # what manager() calls after a task
    before = [generation["collections"] for generation in gc.get_stats()]
    daemon.gc.collect()
    after = [generation["collections"] for generation in gc.get_stats()]
    assert after[1] == before[1] + 1 and after[2] == before[2]  # no full collection
