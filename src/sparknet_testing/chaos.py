"""Driving training runs against a cluster and killing their processes at chosen moments.

The driver runs as its own process (``python -m sparknet.cli.main train ...``) in its own
process group, as a user's would; a :class:`Killer` thread waits for a tripwire (see
``sparknet_testing.faults``) and then sends SIGKILL to the tripped Python worker or to the
executor JVM that runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from sparknet_testing.faults import FAIL, RELEASE, TRIPPED, TRIPWIRE_PLAN
from sparknet_testing.standalone import EXECUTOR_MAIN

Target = Literal["python", "executor"]


def train_command(master: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "sparknet.cli.main", "train", "--master", master,
            "--no-progress", *args]


@dataclass
class Driver:
    """A training driver process; ``kill()`` ends it and the JVM it started at once."""

    popen: subprocess.Popen[str]
    log: Path

    @classmethod
    def start(cls, command: list[str], *, log: Path,
              env: dict[str, str] | None = None) -> Driver:
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1",
               **(env or {})}
        with open(log, "w") as handle:
            popen = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, env=env,
                                     start_new_session=True)
        return cls(popen, log)

    def processes(self) -> list[psutil.Process]:
        """The driver's Python process and its JVM."""
        try:
            parent = psutil.Process(self.popen.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text()


def run_driver(command: list[str], *, log: Path, timeout: float = 300,
               env: dict[str, str] | None = None) -> tuple[int, str]:
    """Runs a driver to the end (``env`` added to its environment); returns its exit code
    and output."""
    driver = Driver.start(command, log=log, env=env)
    try:
        code = driver.wait(timeout)
    finally:
        driver.kill()
    return code, driver.output()


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str,
             poll: float = 0.05) -> None:
    """Polls ``predicate()`` until it holds; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def arm_tripwire(fault_dir: Path, *, after_forwards: int, hold: bool = False) -> None:
    """The first Python worker to reach its ``after_forwards``-th forward pass stops there:
    to be killed, or with ``hold`` until :func:`release_tripwire`."""
    for name in (TRIPPED, RELEASE):
        (fault_dir / name).unlink(missing_ok=True)
    (fault_dir / TRIPWIRE_PLAN).write_text(json.dumps({"after_forwards": after_forwards,
                                                       "hold": hold}))


def tripped_pid(fault_dir: Path, *, timeout: float = 240.0) -> int:
    """Waits for the tripwire to fire; the pid of the Python worker it stopped."""
    marker = fault_dir / TRIPPED
    wait_for(lambda: marker.is_file() and marker.read_text().strip(), timeout=timeout,
             what=f"the tripwire ({marker})")
    return int(marker.read_text())


def release_tripwire(fault_dir: Path) -> None:
    (fault_dir / RELEASE).write_text("")


def clear_faults(fault_dir: Path) -> None:
    for name in (TRIPWIRE_PLAN, TRIPPED, FAIL, RELEASE):
        (fault_dir / name).unlink(missing_ok=True)


def executor_of(pid: int) -> psutil.Process:
    """The executor JVM that (through its Python daemon) runs Python worker ``pid``."""
    proc: psutil.Process | None = psutil.Process(pid)
    while proc is not None:
        if EXECUTOR_MAIN in " ".join(proc.cmdline()):
            return proc
        proc = proc.parent()
    raise LookupError(f"process {pid} does not run under a Spark executor")


@dataclass
class Killer:
    """Waits in a thread for the tripwire, then SIGKILLs the worker or its executor JVM."""

    fault_dir: Path
    target: Target
    timeout: float = 240.0
    killed: list[str] = field(default_factory=list)
    killed_at: float | None = None
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Killer:
        self._thread = threading.Thread(target=self._run, name="sparknet-killer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        marker = self.fault_dir / TRIPPED
        try:
            wait_for(lambda: marker.is_file() and marker.read_text().strip(),
                     timeout=self.timeout, what=f"the tripwire ({marker})")
            pid = int(marker.read_text())
            victim = psutil.Process(pid) if self.target == "python" else executor_of(pid)
            self.killed.append(" ".join(victim.cmdline()))
            victim.send_signal(signal.SIGKILL)
            self.killed_at = time.monotonic()
        except BaseException as exc:  # reported to the test by join()
            self.error = exc

    def join(self, timeout: float = 30) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error


@dataclass
class Straggler:
    """Slows a group of processes to ``share`` of a core by duty-cycling SIGSTOP/SIGCONT.

    Every ``period`` seconds the processes ``members()`` returns (looked up again each
    period, so Python workers forked later are caught) run for ``share * period`` and are
    stopped for the rest. ``stop()`` always leaves them running.
    """

    members: Callable[[], list[psutil.Process]]
    share: float = 0.2
    period: float = 0.1
    _halt: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError(f"share={self.share} must be between 0 and 1")

    def start(self) -> Straggler:
        self._thread = threading.Thread(target=self._run, name="sparknet-straggler",
                                        daemon=True)
        self._thread.start()
        return self

    def _signal(self, procs: list[psutil.Process], sig: signal.Signals) -> None:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def _run(self) -> None:
        procs: list[psutil.Process] = []
        try:
            while not self._halt.is_set():
                procs = self.members()
                self._signal(procs, signal.SIGSTOP)
                self._halt.wait(self.period * (1 - self.share))
                self._signal(procs, signal.SIGCONT)
                self._halt.wait(self.period * self.share)
        finally:
            self._signal(procs, signal.SIGCONT)

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(10)
