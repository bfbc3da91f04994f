"""Elastic clusters for tests and benchmarks: the Spark settings, the run, the event log.

A driver gets Spark settings through ``PYSPARK_SUBMIT_ARGS`` (as ``sparknet train`` users
pass them, docs/gpu.md), and writes Spark's event log: a JSON line per scheduler event, which
says afterwards on which executor and host each task attempt ran, which attempts were
speculative copies, which were killed because another attempt won, and why an executor left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sparknet_testing.chaos import train_command, wait_for
from sparknet_testing.standalone import StandaloneCluster

# Dynamic allocation on a standalone cluster without the external shuffle service, and
# graceful decommissioning with block migration (what an autoscaled cluster runs with).
# spark.dynamicAllocation.minExecutors is left to sparknet: K executors of one core, so that
# they stay requested and a worker that joins gets one (engine.spark_session.elastic_settings).
ELASTIC_SETTINGS = {
    "spark.dynamicAllocation.enabled": "true",
    "spark.dynamicAllocation.shuffleTracking.enabled": "true",
    "spark.dynamicAllocation.maxExecutors": "4",
    "spark.executor.cores": "1",
    "spark.executor.memory": "1g",
    "spark.decommission.enabled": "true",
    "spark.storage.decommission.enabled": "true",
    "spark.storage.decommission.rddBlocks.enabled": "true",
    "spark.storage.decommission.shuffleBlocks.enabled": "true",
}
# Speculate a task once half the round's tasks are done and it has run 1.5 times their
# median. The efficiency check is off: a round's task reads one record, so records per second
# says nothing about its progress.
SPECULATION_SETTINGS = {
    "spark.speculation": "true",
    "spark.speculation.quantile": "0.5",
    "spark.speculation.multiplier": "1.5",
    "spark.speculation.minTaskRuntime": "100ms",
    "spark.speculation.interval": "100ms",
    "spark.speculation.efficiency.enabled": "false",
}
# A worker leaves gracefully on SIGPWR only with this among its own options.
WORKER_DECOMMISSION_OPTS = "-Dspark.decommission.enabled=true"
# Each worker a host of its own (all loopback), so that speculation may place a copy there.
WORKER_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def submit_args(settings: dict[str, str], event_log: Path) -> dict[str, str]:
    """The driver environment that applies ``settings`` and writes the event log there."""
    event_log.mkdir(parents=True, exist_ok=True)
    every = {**settings, "spark.eventLog.enabled": "true",
             "spark.eventLog.dir": f"file://{event_log}", "spark.eventLog.compress": "false",
             "spark.eventLog.rolling.enabled": "false"}
    confs = " ".join(f"--conf {key}={value}" for key, value in every.items())
    return {"PYSPARK_SUBMIT_ARGS": f"{confs} pyspark-shell"}


@dataclass(frozen=True, kw_only=True)
class ElasticRun:
    """The run the elastic tests and ``benchmarks/elastic.py`` share: the tripwire MLP
    (784-32-10) on Fashion-MNIST images, K=2, as ``sparknet train`` driver processes."""

    cluster: StandaloneCluster
    fashion_dir: Path
    tau: int = 100
    rounds: int = 8
    batch_size: int = 64
    train_limit: int = 4000

    def command(self, run_dir: Path) -> list[str]:
        return train_command(
            self.cluster.master_url, "--model", "sparknet_testing.faults:tripwire_net",
            "--num-workers", "2", "--tau", str(self.tau), "--batch-size",
            str(self.batch_size), "--rounds", str(self.rounds), "--lr", "0.05",
            "--eval-every", "0", "--checkpoint-every", str(self.rounds), "--seed", "3",
            "--train-limit", str(self.train_limit), "--test-limit", "1000", "--data-dir",
            str(self.fashion_dir), "--output", str(run_dir))


def rounds_logged(run_dir: Path) -> int:
    """How many rounds a running driver has finished (lines of its ``metrics.jsonl``)."""
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


@dataclass(frozen=True)
class TaskAttempt:
    stage: int
    index: int
    executor: str
    host: str
    speculative: bool
    launched_ms: int
    outcome: str  # Spark's reason: Success, TaskKilled, ExceptionFailure, ...
    kill_reason: str = ""


@dataclass
class EventLog:
    """What one application's event log says about its tasks and executors."""

    tasks: list[TaskAttempt] = field(default_factory=list)
    executor_hosts: dict[str, str] = field(default_factory=dict)
    added_ms: dict[str, int] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # executor -> reason
    removed_ms: dict[str, int] = field(default_factory=dict)
    spark_properties: dict[str, str] = field(default_factory=dict)  # the driver's settings

    @classmethod
    def read(cls, folder: Path, *, timeout: float = 60.0) -> EventLog:
        """Reads the log once the driver JVM has closed it (its shutdown hook stops the
        SparkContext after the Python process exits; until then events sit in a buffer)."""
        def finished() -> list[Path]:
            return [path for path in folder.iterdir() if not path.name.endswith(".inprogress")]

        wait_for(finished, timeout=timeout, what=f"the driver to close its event log in {folder}")
        files = finished()
        if len(files) != 1:
            raise AssertionError(f"expected one event log in {folder}, found "
                                 f"{sorted(path.name for path in files)}")
        log = cls()
        for line in files[0].read_text().splitlines():
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerTaskEnd":
                info, reason = event["Task Info"], event["Task End Reason"]
                log.tasks.append(TaskAttempt(
                    stage=int(event["Stage ID"]), index=int(info["Index"]),
                    executor=str(info["Executor ID"]), host=str(info["Host"]),
                    speculative=bool(info["Speculative"]), launched_ms=int(info["Launch Time"]),
                    outcome=str(reason["Reason"]), kill_reason=str(reason.get("Kill Reason", ""))))
            elif kind == "SparkListenerExecutorAdded":
                executor = str(event["Executor ID"])
                log.executor_hosts[executor] = str(event["Executor Info"]["Host"])
                log.added_ms[executor] = int(event["Timestamp"])
            elif kind == "SparkListenerEnvironmentUpdate":
                log.spark_properties = {str(k): str(v) for k, v in
                                        event.get("Spark Properties", {}).items()}
            elif kind == "SparkListenerExecutorRemoved":
                executor = str(event["Executor ID"])
                log.removed[executor] = str(event.get("Removed Reason", ""))
                log.removed_ms[executor] = int(event["Timestamp"])
        return log

    def succeeded(self) -> list[TaskAttempt]:
        return [task for task in self.tasks if task.outcome == "Success"]
